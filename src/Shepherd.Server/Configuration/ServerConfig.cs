using System.Text.Json.Serialization;
using Shepherd.Engine.Configuration;
using Shepherd.Engine.Model;
using Shepherd.Engine.Storage;

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

    /// <summary>The mode each door's batches run in when their create names none.</summary>
    public DoorModesConfig? Modes { get; set; }

    /// <summary>The answer cache, kept by tenant across batches; none without this section.</summary>
    public ServerCacheConfig? Cache { get; set; }

    /// <summary>The realtime door: how long a call waits, how large it may be, how calls that can wait are collected.</summary>
    public GatewayConfig? Gateway { get; set; }

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

        Modes?.Check($"{where}.modes");
        Cache?.Check($"{where}.cache");
        Gateway?.Check($"{where}.gateway");
    }
}

/// <summary>The <c>gateway</c> of the <c>server</c> section: the realtime door's settings; each missing one keeps its default.</summary>
public sealed class GatewayConfig
{
    /// <summary>How long a call waits for its answer when its SDK does not say (default 600).</summary>
    public double? CallTimeoutSeconds { get; set; }

    /// <summary>The largest body of a call, in bytes (default 32 MB).</summary>
    public long? MaxCallBodyBytes { get; set; }

    /// <summary>The most calls that can wait one batch collects (default 1,000).</summary>
    public int? CollectSize { get; set; }

    /// <summary>The longest a batch of calls that can wait collects, in seconds (default 60).</summary>
    public double? CollectSeconds { get; set; }

    internal void Check(string where)
    {
        foreach (var (name, value) in new[] { ("callTimeoutSeconds", CallTimeoutSeconds), ("maxCallBodyBytes", (double?)MaxCallBodyBytes), ("collectSize", (double?)CollectSize) })
        {
            if (value is not null and < 1)
            {
                throw new ConfigException($"{where}.{name}: must be at least 1.");
            }
        }

        if (CollectSeconds is < 0)
        {
            throw new ConfigException($"{where}.collectSeconds: must be 0 or more.");
        }
    }

    /// <summary>Sets what this section gives on <paramref name="options"/>.</summary>
    public void ApplyTo(ServerOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.CallTimeout = CallTimeoutSeconds is { } timeout ? TimeSpan.FromSeconds(timeout) : options.CallTimeout;
        options.MaxCallBodyBytes = MaxCallBodyBytes ?? options.MaxCallBodyBytes;
        options.CallCollectSize = CollectSize ?? options.CallCollectSize;
        options.CallCollectAge = CollectSeconds is { } age ? TimeSpan.FromSeconds(age) : options.CallCollectAge;
    }
}

/// <summary>
/// The <c>cache</c> of the <c>server</c> section: answers kept by tenant, across batches, so a
/// request a tenant sent before is answered again at no cost. Batches use it unless their create
/// says <c>cache: false</c> (metadata <c>shepherd_cache</c> on the OpenAI door).
/// </summary>
public sealed class ServerCacheConfig
{
    /// <summary>False turns the cache off while keeping the section; true by default.</summary>
    public bool Enabled { get; set; } = true;

    /// <summary>A SQLite file for the cache; by default a shared store's PostgreSQL database holds it, or a file beside an embedded store's (<c>STATE.answers.db</c>).</summary>
    public string? Path { get; set; }

    /// <summary>The most megabytes of answers kept (1024 by default); past it, those used longest ago go first.</summary>
    public double? MaxMegabytes { get; set; }

    /// <summary>How many days an answer is kept and used (30 by default).</summary>
    public double? MaxAgeDays { get; set; }

    /// <summary>Whether answers to requests that ask for sampling are replayed for batches that do not say (true by default).</summary>
    public bool Sampled { get; set; } = true;

    /// <summary>The cache as the server takes it; null when it is off.</summary>
    public ServerCacheOptions? ToOptions()
    {
        Check("server.cache");
        var limits = AnswerCacheLimits.Default;
        return Enabled
            ? new ServerCacheOptions
            {
                Path = Path,
                Limits = new AnswerCacheLimits(
                    MaxMegabytes is { } megabytes ? (long)(megabytes * 1024 * 1024) : limits.MaxBytes,
                    MaxAgeDays is { } days ? TimeSpan.FromDays(days) : limits.MaxAge),
                ReplaySampled = Sampled,
            }
            : null;
    }

    internal void Check(string where)
    {
        if (MaxMegabytes is { } megabytes && !(megabytes > 0 && megabytes <= 1e9))
        {
            throw new ConfigException($"{where}.maxMegabytes: must be more than 0 (and at most 1000000000).");
        }

        if (MaxAgeDays is { } days && !(days > 0 && days <= 36_500))
        {
            throw new ConfigException($"{where}.maxAgeDays: must be more than 0 (and at most 36500).");
        }

        if (Path is not null && string.IsNullOrWhiteSpace(Path))
        {
            throw new ConfigException($"{where}.path: must name a file.");
        }
    }
}

/// <summary>
/// The <c>modes</c> of the <c>server</c> section: the mode of a batch whose create names none, by
/// door (<c>realtime</c>, <c>native</c>, <c>flex</c> or <c>auto</c>); a door left out chooses as
/// the engine does (auto with a deadline and a cheaper tier, realtime otherwise).
/// </summary>
public sealed class DoorModesConfig
{
    /// <summary>File batches of the OpenAI door (<c>POST /v1/batches</c> with <c>input_file_id</c>), unless their metadata's <c>shepherd_mode</c> names one.</summary>
    [JsonPropertyName("openai")]
    public string? OpenAI { get; set; }

    /// <summary>Batches of the Anthropic door, which has no field for a mode.</summary>
    [JsonPropertyName("anthropic")]
    public string? Anthropic { get; set; }

    /// <summary>Inline batches (<c>POST /v1/batches</c> with <c>requests</c>), unless their <c>mode</c> names one.</summary>
    [JsonPropertyName("inline")]
    public string? Inline { get; set; }

    /// <summary>The modes given, by door (checked first, as loading the file does).</summary>
    public IReadOnlyDictionary<BatchDoor, BatchMode> ToModes()
    {
        Check("server.modes");
        return Given().Where(d => d.Word is not null).ToDictionary(d => d.Door, d => BatchModeWords.Parse(d.Word!)!.Value);
    }

    internal void Check(string where)
    {
        foreach (var (name, _, word) in Given())
        {
            if (word is not null && BatchModeWords.Parse(word) is null)
            {
                throw new ConfigException($"{where}.{name}: '{word}' is not a mode; use {BatchModeWords.Listed}.");
            }
        }
    }

    private IEnumerable<(string Name, BatchDoor Door, string? Word)> Given() =>
        [("openai", BatchDoor.OpenAI, OpenAI), ("anthropic", BatchDoor.Anthropic, Anthropic), ("inline", BatchDoor.Inline, Inline)];
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

    /// <summary>The most the tenant's realtime calls may cost a day (UTC), in US dollars.</summary>
    public decimal? DailyBudgetUsd { get; set; }

    internal void Check(string where)
    {
        if (DailyBudgetUsd is { } budget && Engine.Pricing.Cost.BudgetFromUsd(budget) is null)
        {
            throw new ConfigException($"{where}.dailyBudgetUsd: must be a number of US dollars, 0 or more.");
        }

        foreach (var (name, value) in new[] { ("requestsPerMinute", RequestsPerMinute), ("openBatches", (double?)OpenBatches), ("queuedItems", (double?)QueuedItems), ("maxFileBytes", (double?)MaxFileBytes) })
        {
            if (value is not null and < 1)
            {
                throw new ConfigException($"{where}.{name}: must be at least 1.");
            }
        }
    }
}
