using System.Text.Json;
using System.Text.Json.Serialization;
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

        return config;
    }

    private static string FirstSentence(string message)
    {
        var cut = message.IndexOf(" Path:", StringComparison.Ordinal);
        return cut > 0 ? message[..cut] : message;
    }
}

/// <summary>One upstream in the configuration file.</summary>
public sealed class UpstreamConfig
{
    /// <summary>A name for logs and lanes.</summary>
    public string? Name { get; set; }

    /// <summary><c>openai</c> (any OpenAI-compatible server) or <c>anthropic</c>.</summary>
    public string Provider { get; set; } = "openai";

    /// <summary>The base url.</summary>
    public Uri? BaseUrl { get; set; }

    /// <summary>The key itself; prefer <see cref="ApiKeyEnv"/> or <see cref="ApiKeyFile"/>.</summary>
    public string? ApiKey { get; set; }

    /// <summary>The environment variable that holds the key.</summary>
    public string? ApiKeyEnv { get; set; }

    /// <summary>A file that holds the key (its first line).</summary>
    public string? ApiKeyFile { get; set; }

    /// <summary>The share of traffic among upstreams serving a model.</summary>
    public int Weight { get; set; } = 1;

    /// <summary>The models served; none for every model.</summary>
    public List<string>? Models { get; set; }

    /// <summary>Requests per minute of each lane.</summary>
    public long? Rpm { get; set; }

    /// <summary>Tokens per minute of each lane.</summary>
    public long? Tpm { get; set; }

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
        Models = Models,
        Limits = new LaneLimits { RequestsPerMinute = Rpm, TokensPerMinute = Tpm, MaxConcurrency = Concurrency },
        ModelLimits = Lanes.ToDictionary(
            p => p.Key,
            p => new LaneLimits { RequestsPerMinute = p.Value.Rpm, TokensPerMinute = p.Value.Tpm, MaxConcurrency = p.Value.Concurrency },
            StringComparer.Ordinal),
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

        if ((ApiKey is not null ? 1 : 0) + (ApiKeyEnv is not null ? 1 : 0) + (ApiKeyFile is not null ? 1 : 0) > 1)
        {
            throw new ConfigException($"{where}: give the key once: apiKey, apiKeyEnv or apiKeyFile.");
        }

        if (ApiKeyFile is not null && !File.Exists(ApiKeyFile))
        {
            throw new ConfigException($"{where}.apiKeyFile: {ApiKeyFile} does not exist.");
        }

        try
        {
            ToOptions().Limits.Validate(where);
            foreach (var (model, lane) in Lanes)
            {
                new LaneLimits { RequestsPerMinute = lane.Rpm, TokensPerMinute = lane.Tpm, MaxConcurrency = lane.Concurrency }.Validate($"{where}.lanes.{model}");
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

    private string? ReadKey()
    {
        if (ApiKeyEnv is not null)
        {
            return Environment.GetEnvironmentVariable(ApiKeyEnv);
        }

        return ApiKeyFile is not null ? File.ReadLines(ApiKeyFile).FirstOrDefault()?.Trim() : ApiKey;
    }
}

/// <summary>Limits of one lane in the configuration file.</summary>
public sealed class LaneConfig
{
    /// <summary>Requests per minute.</summary>
    public long? Rpm { get; set; }

    /// <summary>Tokens per minute.</summary>
    public long? Tpm { get; set; }

    /// <summary>The most requests in flight.</summary>
    public int? Concurrency { get; set; }
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
