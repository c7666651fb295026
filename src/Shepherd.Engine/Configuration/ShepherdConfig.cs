using System.Text.Json;
using System.Text.Json.Serialization;
using Shepherd.Engine.Native;
using Shepherd.Engine.Pricing;
using Shepherd.Engine.Storage;
using Shepherd.Engine.Upstreams;

namespace Shepherd.Engine.Configuration;

/// <summary>
/// The configuration file (<c>shepherd.json</c>): upstreams with their keys, weights, models and
/// per-lane limits. Unknown properties are errors, so a typo never silently drops a limit.
/// </summary>
public sealed class ShepherdConfig
{
    /// <summary>The upstreams requests go to.</summary>
    public List<UpstreamConfig> Upstreams { get; set; } = [];

    /// <summary>How <c>shepherd serve</c> listens, whom it lets in, and its limits.</summary>
    public ServerConfig? Server { get; set; }

    /// <summary>Prices by model, replacing or adding to the built-in table.</summary>
    public Dictionary<string, PriceConfig> Prices { get; set; } = [];

    /// <summary>How native batches are handed to the providers' batch APIs.</summary>
    public NativeConfig? Native { get; set; }

    /// <summary>
    /// Where <c>shepherd serve</c> keeps its state: the path of a SQLite file, or a PostgreSQL
    /// connection string (<c>postgres://user@host:5432/shepherd</c>, or <c>Host=…;Database=…</c>)
    /// that several nodes share.
    /// </summary>
    public string? Store { get; set; }

    /// <summary>How this node takes part among nodes that share a PostgreSQL store.</summary>
    public ClusterConfig? Cluster { get; set; }

    /// <summary>The built-in price table with this file's prices over it.</summary>
    public PriceTable PriceTable() =>
        Pricing.PriceTable.BuiltIn.With(Prices.Select(p => new ModelPrice(p.Key, p.Value.Input, p.Value.Output, p.Value.CachedInput, p.Value.BatchDiscount, p.Value.ContextTokens ?? Pricing.PriceTable.BuiltIn.Find(p.Key)?.ContextTokens)));

    /// <summary>Reads and checks a configuration file; errors name the file, the line and the property.</summary>
    public static ShepherdConfig Load(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        string text;
        try
        {
            text = File.ReadAllText(path);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            throw new ConfigException($"{path}: cannot be read: {ex.Message}");
        }

        ShepherdConfig? config;
        try
        {
            config = JsonSerializer.Deserialize(text, ShepherdConfigJson.Default.ShepherdConfig);
        }
        catch (JsonException ex)
        {
            var where = ex.LineNumber is { } line ? $"line {line + 1}" : "?";
            throw new ConfigException($"{path}:{where}: {(ex.Path is { Length: > 1 } p ? p + ": " : "")}{FirstSentence(ex.Message)}");
        }

        if (config is null)
        {
            throw new ConfigException($"{path}: the file holds no configuration object.");
        }

        for (var i = 0; i < config.Upstreams.Count; i++)
        {
            config.Upstreams[i].Check($"{path}: upstreams[{i}]");
        }

        config.Server?.Check($"{path}: server");
        config.Cluster?.Check($"{path}: cluster");
        if (config.Store is { } store && PostgresStoreOptions.Names(store))
        {
            try
            {
                new PostgresStoreOptions { ConnectionString = store }.Validated();
            }
            catch (ArgumentException ex)
            {
                throw new ConfigException($"{path}: store: {ex.Message.Split(" (Parameter", 2)[0]}");
            }
        }
        if (config.Native?.PollSeconds is <= 0)
        {
            throw new ConfigException($"{path}: native.pollSeconds: must be more than 0.");
        }

        try
        {
            config.PriceTable();
        }
        catch (ArgumentException ex)
        {
            throw new ConfigException($"{path}: prices: {ex.Message}");
        }

        return config;
    }

    private static string FirstSentence(string message)
    {
        var cut = message.IndexOf(" Path:", StringComparison.Ordinal);
        return cut > 0 ? message[..cut] : message;
    }
}

/// <summary>
/// A key given in the configuration: inline (<c>apiKey</c>), from an environment variable
/// (<c>apiKeyEnv</c>) or from the first line of a file (<c>apiKeyFile</c>), so the file itself
/// need hold no secret.
/// </summary>
public abstract class KeyedConfig
{
    /// <summary>The key itself.</summary>
    public string? ApiKey { get; set; }

    /// <summary>The environment variable holding the key.</summary>
    public string? ApiKeyEnv { get; set; }

    /// <summary>A file whose first line is the key.</summary>
    public string? ApiKeyFile { get; set; }

    /// <summary>The key, wherever it is kept; null when none is given or the variable is unset.</summary>
    public string? ReadKey()
    {
        if (ApiKeyEnv is not null)
        {
            return Environment.GetEnvironmentVariable(ApiKeyEnv);
        }

        return ApiKeyFile is not null ? File.ReadLines(ApiKeyFile).FirstOrDefault()?.Trim() : ApiKey;
    }

    /// <summary>Checks that the key is given at most once and that its file exists.</summary>
    protected void CheckKey(string where)
    {
        if ((ApiKey is not null ? 1 : 0) + (ApiKeyEnv is not null ? 1 : 0) + (ApiKeyFile is not null ? 1 : 0) > 1)
        {
            throw new ConfigException($"{where}: give the key once: apiKey, apiKeyEnv or apiKeyFile.");
        }

        if (ApiKeyFile is not null && !File.Exists(ApiKeyFile))
        {
            throw new ConfigException($"{where}.apiKeyFile: {ApiKeyFile} does not exist.");
        }
    }
}

/// <summary>One upstream in the configuration file.</summary>
public sealed class UpstreamConfig : KeyedConfig
{
    /// <summary>A name for logs and lanes.</summary>
    public string? Name { get; set; }

    /// <summary><c>openai</c> (any OpenAI-compatible server) or <c>anthropic</c>.</summary>
    public string Provider { get; set; } = "openai";

    /// <summary>The base url.</summary>
    public Uri? BaseUrl { get; set; }

    /// <summary>The share of traffic among upstreams serving a model.</summary>
    public int Weight { get; set; } = 1;

    /// <summary>
    /// Whether the upstream has a native batch API for batches in <c>native</c> mode; unset, true
    /// for <c>anthropic</c> and for OpenAI's own base url, false for other servers.
    /// </summary>
    public bool? BatchApi { get; set; }

    /// <summary>The models served; none for every model.</summary>
    public List<string>? Models { get; set; }

    /// <summary>Requests per minute of each lane.</summary>
    public long? Rpm { get; set; }

    /// <summary>Tokens per minute of each lane.</summary>
    public long? Tpm { get; set; }

    /// <summary>Input tokens per minute of each lane, where the provider limits them apart.</summary>
    public long? Itpm { get; set; }

    /// <summary>Output tokens per minute of each lane, where the provider limits them apart.</summary>
    public long? Otpm { get; set; }

    /// <summary>The most requests in flight on each lane.</summary>
    public int? Concurrency { get; set; }

    /// <summary>Limits of single lanes, by model.</summary>
    public Dictionary<string, LaneConfig> Lanes { get; set; } = [];

    /// <summary>Builds the engine's options; the key is read from wherever the configuration says.</summary>
    public UpstreamOptions ToOptions() => new()
    {
        Name = Name,
        Kind = Provider == "anthropic" ? UpstreamKind.Anthropic : UpstreamKind.OpenAI,
        BaseUrl = BaseUrl,
        ApiKey = ReadKey() is { Length: > 0 } key ? new Secret(key) : null,
        Weight = Weight,
        BatchApi = BatchApi,
        Models = Models,
        Limits = new LaneConfig { Rpm = Rpm, Tpm = Tpm, Itpm = Itpm, Otpm = Otpm, Concurrency = Concurrency }.ToLimits(),
        ModelLimits = Lanes.ToDictionary(p => p.Key, p => p.Value.ToLimits(), StringComparer.Ordinal),
    };

    internal void Check(string where)
    {
        if (Provider is not ("openai" or "anthropic"))
        {
            throw new ConfigException($"{where}.provider: '{Provider}' is not one of openai, anthropic.");
        }

        if (BaseUrl is { } url && (!url.IsAbsoluteUri || url.Scheme is not ("http" or "https")))
        {
            throw new ConfigException($"{where}.baseUrl: '{url}' is not an absolute http or https url.");
        }

        CheckKey(where);
        try
        {
            ToOptions().Limits.Validate(where);
            foreach (var (model, lane) in Lanes)
            {
                lane.ToLimits().Validate($"{where}.lanes.{model}");
            }

            if (Weight < 1)
            {
                throw new ArgumentException($"{where}.weight: must be at least 1.");
            }
        }
        catch (ArgumentException ex)
        {
            throw new ConfigException(ex.Message);
        }
    }
}

/// <summary>Limits of one lane in the configuration file.</summary>
public sealed class LaneConfig
{
    /// <summary>Requests per minute.</summary>
    public long? Rpm { get; set; }

    /// <summary>Tokens per minute.</summary>
    public long? Tpm { get; set; }

    /// <summary>Input tokens per minute, where the provider limits them apart.</summary>
    public long? Itpm { get; set; }

    /// <summary>Output tokens per minute, where the provider limits them apart.</summary>
    public long? Otpm { get; set; }

    /// <summary>The most requests in flight.</summary>
    public int? Concurrency { get; set; }

    internal LaneLimits ToLimits() => new()
    {
        RequestsPerMinute = Rpm,
        TokensPerMinute = Tpm,
        InputTokensPerMinute = Itpm,
        OutputTokensPerMinute = Otpm,
        MaxConcurrency = Concurrency,
    };
}

/// <summary>The <c>native</c> section: how native batches are watched at their provider.</summary>
public sealed class NativeConfig
{
    /// <summary>Seconds between two looks at a provider batch; the default is 30.</summary>
    public double? PollSeconds { get; set; }

    /// <summary>The native options with this section's values over the defaults.</summary>
    public NativeBatchOptions ToOptions() => PollSeconds is { } seconds
        ? new NativeBatchOptions { PollInterval = TimeSpan.FromSeconds(seconds) }
        : new NativeBatchOptions();
}

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

/// <summary>A model's price in the <c>prices</c> section, in US dollars per million tokens.</summary>
public sealed class PriceConfig
{
    /// <summary>Per million prompt tokens.</summary>
    public decimal Input { get; set; }

    /// <summary>Per million answer tokens.</summary>
    public decimal Output { get; set; }

    /// <summary>Per million cached prompt tokens, where it differs from <see cref="Input"/>.</summary>
    public decimal? CachedInput { get; set; }

    /// <summary>
    /// The share the provider's batch API takes off.
    /// <value>The default is 0.5.</value>
    /// </summary>
    public decimal BatchDiscount { get; set; } = 0.5m;

    /// <summary>
    /// The model's context window in tokens: a prompt beyond it is refused with its line number.
    /// <value>The default is the built-in table's window for the model, or none (no check).</value>
    /// </summary>
    public int? ContextTokens { get; set; }
}

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

/// <summary>The configuration file is wrong; the message says where and how.</summary>
public sealed class ConfigException : Exception
{
    /// <summary>Creates an exception with no message.</summary>
    public ConfigException()
    {
    }

    /// <summary>Creates an exception with a message.</summary>
    public ConfigException(string message)
        : base(message)
    {
    }

    /// <summary>Creates an exception with a message and its cause.</summary>
    public ConfigException(string message, Exception innerException)
        : base(message, innerException)
    {
    }
}

[JsonSourceGenerationOptions(
    PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase,
    UnmappedMemberHandling = JsonUnmappedMemberHandling.Disallow,
    ReadCommentHandling = JsonCommentHandling.Skip,
    AllowTrailingCommas = true)]
[JsonSerializable(typeof(ShepherdConfig))]
internal sealed partial class ShepherdConfigJson : JsonSerializerContext;
