namespace Shepherd.Cli.Running;

/// <summary>Everything <c>shepherd serve</c> was told.</summary>
internal sealed record ServeSettings : EngineSettings
{
    /// <summary>The addresses to listen on; null takes the configuration file's, or the default.</summary>
    public IReadOnlyList<string>? Urls { get; init; }

    /// <summary>The state file, or a PostgreSQL connection string; null takes the configuration file's, or <c>shepherd.db</c>.</summary>
    public string? Store { get; init; }

    /// <summary>This node's name among nodes sharing a PostgreSQL store; null takes the configuration file's, or the machine's name and port.</summary>
    public string? Node { get; init; }

    /// <summary>Where traces go; null takes the configuration file's, or none.</summary>
    public Uri? OtlpEndpoint { get; init; }

    /// <summary>Keys clients must present, on top of those of the configuration file.</summary>
    public IReadOnlyList<string> GatewayKeys { get; init; } = [];
}
