using Shepherd.Engine.Configuration;

namespace Shepherd.Server.Configuration;

/// <summary>The <c>server</c> section: what <c>shepherd serve</c> listens on, its keys and limits.</summary>
public sealed class ServerConfig
{
    /// <summary>The addresses to listen on, such as <c>http://127.0.0.1:8080</c>.</summary>
    public List<string>? Urls { get; set; }

    /// <summary>The store: the path of the SQLite state file.</summary>
    public string? State { get; set; }

    /// <summary>The keys clients present; each is a tenant that sees only its own files and batches.</summary>
    public List<GatewayKeyConfig> GatewayKeys { get; set; } = [];

    /// <summary>The largest file upload, in bytes.</summary>
    public long? MaxUploadBytes { get; set; }

    /// <summary>The most requests in one uploaded file.</summary>
    public long? MaxFileRequests { get; set; }

    /// <summary>The largest body of an inline or Anthropic create call, in bytes.</summary>
    public long? MaxCreateBodyBytes { get; set; }

    /// <summary>The most requests in one inline or Anthropic create call.</summary>
    public long? MaxCreateRequests { get; set; }

    /// <summary>An OpenTelemetry collector's OTLP endpoint to send traces to; none by default.</summary>
    public Uri? OtlpEndpoint { get; set; }

    internal void Check(string where)
    {
        for (var i = 0; i < GatewayKeys.Count; i++)
        {
            GatewayKeys[i].Check($"{where}.gatewayKeys[{i}]");
        }

        foreach (var (name, value) in new[] { ("maxUploadBytes", MaxUploadBytes), ("maxFileRequests", MaxFileRequests), ("maxCreateBodyBytes", MaxCreateBodyBytes), ("maxCreateRequests", MaxCreateRequests) })
        {
            if (value < 1)
            {
                throw new ConfigException($"{where}.{name}: must be at least 1.");
            }
        }
    }
}

/// <summary>A gateway key: a tenant's name and its key, given once (inline, by variable or by file).</summary>
public sealed class GatewayKeyConfig : KeyedConfig
{
    /// <summary>The tenant's name, recorded as the owner of what the key creates.</summary>
    public string? Name { get; set; }

    /// <summary>The key's SHA-256 (64 hex digits), instead of the key: the file then holds nothing a client could present.</summary>
    public string? Sha256 { get; set; }

    /// <summary>What the key may do: <c>read</c>, <c>submit</c>, <c>admin</c>; the default is read and submit.</summary>
    public List<string>? Scopes { get; set; }

    /// <summary>The tenant's limits; none by default.</summary>
    public TenantLimitsConfig? Limits { get; set; }

    /// <summary>The scope names a key may carry.</summary>
    public static IReadOnlyList<string> ScopeNames { get; } = ["read", "submit", "admin"];

    internal void Check(string where)
    {
        CheckKey(where);
        if (Sha256 is not null)
        {
            if (ApiKey is not null || ApiKeyEnv is not null || ApiKeyFile is not null)
            {
                throw new ConfigException($"{where}: give the key or its sha256, not both.");
            }

            if (Sha256.Length != 64 || !Sha256.All(char.IsAsciiHexDigit))
            {
                throw new ConfigException($"{where}.sha256: a SHA-256 is 64 hex digits (sha256sum of the key, without a newline).");
            }
        }
        else if (string.IsNullOrWhiteSpace(ReadKey()))
        {
            throw new ConfigException($"{where}: the key is missing or empty (apiKey, apiKeyEnv, apiKeyFile or sha256).");
        }

        foreach (var scope in Scopes ?? [])
        {
            if (!ScopeNames.Contains(scope, StringComparer.Ordinal))
            {
                throw new ConfigException($"{where}.scopes: '{scope}' is not a scope; use {string.Join(", ", ScopeNames)}.");
            }
        }

        Limits?.Check($"{where}.limits");
    }
}

/// <summary>A tenant's limits in the configuration file; a missing one is no limit.</summary>
public sealed class TenantLimitsConfig
{
    /// <summary>API calls a minute.</summary>
    public double? RequestsPerMinute { get; set; }

    /// <summary>Batches not yet ended.</summary>
    public long? OpenBatches { get; set; }

    /// <summary>Requests of open batches not yet ended.</summary>
    public long? QueuedItems { get; set; }

    /// <summary>The largest upload, in bytes.</summary>
    public long? MaxFileBytes { get; set; }

    internal void Check(string where)
    {
        foreach (var (name, value) in new[] { ("requestsPerMinute", RequestsPerMinute), ("openBatches", (double?)OpenBatches), ("queuedItems", (double?)QueuedItems), ("maxFileBytes", (double?)MaxFileBytes) })
        {
            if (value is not null and < 1)
            {
                throw new ConfigException($"{where}.{name}: must be at least 1.");
            }
        }
    }
}
