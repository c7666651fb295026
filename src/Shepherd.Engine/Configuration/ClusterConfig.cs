namespace Shepherd.Engine.Configuration;

/// <summary>The <c>cluster</c> section: this node among nodes that share a PostgreSQL store.</summary>
public sealed class ClusterConfig
{
    /// <summary>This node's name, unique among the nodes; the default is the machine's name and the port it listens on.</summary>
    public string? Node { get; set; }

    /// <summary>Seconds a node may stay silent before the others take over its work; the default is 15.</summary>
    public double? NodeTimeoutSeconds { get; set; }

    internal void Check(string where)
    {
        if (Node is { } node && string.IsNullOrWhiteSpace(node))
        {
            throw new ConfigException($"{where}.node: must not be empty.");
        }

        if (NodeTimeoutSeconds is < 1)
        {
            throw new ConfigException($"{where}.nodeTimeoutSeconds: must be at least 1.");
        }
    }
}
