namespace Shepherd.Cli.Running;

/// <summary>Everything <c>shepherd serve</c> was told.</summary>
internal sealed record ServeSettings : EngineSettings
{
    /// <summary>The addresses to listen on; null takes the configuration file's, or the default.</summary>
    public IReadOnlyList<string>? Urls { get; init; }

    /// <summary>The state file; null takes the configuration file's, or <c>shepherd.db</c>.</summary>
    public string? StatePath { get; init; }

    /// <summary>Keys clients must present, on top of those of the configuration file.</summary>
    public IReadOnlyList<string> GatewayKeys { get; init; } = [];
}
