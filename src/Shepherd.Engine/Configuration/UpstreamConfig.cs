using Shepherd.Engine.Upstreams;

namespace Shepherd.Engine.Configuration;

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

    /// <summary>Whether the upstream offers OpenAI's flex tier (<c>service_tier: "flex"</c>) for its models; unset, false.</summary>
    public bool? Flex { get; set; }

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
        Flex = Flex ?? false,
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
