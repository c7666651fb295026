namespace Shepherd.Engine.Upstreams;

/// <summary>The dialect and authentication an upstream speaks.</summary>
public enum UpstreamKind
{
    /// <summary>OpenAI and every OpenAI-compatible server: <c>Authorization: Bearer</c>.</summary>
    OpenAI,

    /// <summary>Anthropic: <c>x-api-key</c> and <c>anthropic-version</c>.</summary>
    Anthropic,
}

/// <summary>Limits of one lane: an upstream serving one model.</summary>
public sealed class LaneLimits
{
    /// <summary>Requests per minute; null to learn it from the provider's headers.</summary>
    public long? RequestsPerMinute { get; set; }

    /// <summary>Tokens per minute (prompt plus expected output); null to learn it from the provider's headers.</summary>
    public long? TokensPerMinute { get; set; }

    /// <summary>Input tokens per minute, a limit of its own as Anthropic has it (prompt tokens; cache reads not counted); null to learn it from the provider's headers.</summary>
    public long? InputTokensPerMinute { get; set; }

    /// <summary>Output tokens per minute, a limit of its own as Anthropic has it (charged from max_tokens when sent); null to learn it from the provider's headers.</summary>
    public long? OutputTokensPerMinute { get; set; }

    /// <summary>The most requests in flight at once; null for the dispatcher's default.</summary>
    public int? MaxConcurrency { get; set; }

    /// <summary>Checks the limits, naming <paramref name="where"/> in the message.</summary>
    public void Validate(string where)
    {
        if (RequestsPerMinute is < 1 || TokensPerMinute is < 1 || InputTokensPerMinute is < 1 || OutputTokensPerMinute is < 1 || MaxConcurrency is < 1 or > 10_000)
        {
            throw new ArgumentException($"{where}: rpm, tpm, itpm and otpm must be at least 1 and concurrency between 1 and 10000.");
        }
    }

    /// <summary>These limits, with what they leave unset taken from <paramref name="fallback"/>.</summary>
    public LaneLimits Over(LaneLimits fallback) => new()
    {
        RequestsPerMinute = RequestsPerMinute ?? fallback.RequestsPerMinute,
        TokensPerMinute = TokensPerMinute ?? fallback.TokensPerMinute,
        InputTokensPerMinute = InputTokensPerMinute ?? fallback.InputTokensPerMinute,
        OutputTokensPerMinute = OutputTokensPerMinute ?? fallback.OutputTokensPerMinute,
        MaxConcurrency = MaxConcurrency ?? fallback.MaxConcurrency,
    };
}

/// <summary>Where requests go and how they authenticate.</summary>
public sealed class UpstreamOptions
{
    /// <summary>
    /// A name for logs, metrics and lanes.
    /// <value>The default is the base url's host.</value>
    /// </summary>
    public string? Name { get; set; }

    /// <summary>
    /// This upstream's share of traffic among the upstreams that serve a model.
    /// <value>The default is 1.</value>
    /// </summary>
    public int Weight { get; set; } = 1;

    /// <summary>The models this upstream serves; null or empty for every model.</summary>
    public IReadOnlyList<string>? Models { get; set; }

    /// <summary>Limits of each of this upstream's lanes, unless <see cref="ModelLimits"/> says otherwise.</summary>
    public LaneLimits Limits { get; set; } = new();

    /// <summary>Limits of single lanes, by model.</summary>
    public IReadOnlyDictionary<string, LaneLimits> ModelLimits { get; set; } = new Dictionary<string, LaneLimits>();

    /// <summary>The default base url of <see cref="UpstreamKind.OpenAI"/>.</summary>
    public static readonly Uri OpenAIDefaultBaseUrl = new("https://api.openai.com/v1");

    /// <summary>The default base url of <see cref="UpstreamKind.Anthropic"/>.</summary>
    public static readonly Uri AnthropicDefaultBaseUrl = new("https://api.anthropic.com");

    /// <summary>
    /// The dialect of the upstream.
    /// <value>The default is <see cref="UpstreamKind.OpenAI"/>.</value>
    /// </summary>
    public UpstreamKind Kind { get; set; } = UpstreamKind.OpenAI;

    /// <summary>
    /// The base url. A request url such as <c>/v1/chat/completions</c> is appended; a base
    /// that already ends in <c>/v1</c> is not given a second one.
    /// <value>The default depends on <see cref="Kind"/>.</value>
    /// </summary>
    public Uri? BaseUrl { get; set; }

    /// <summary>The API key; null sends none (a local server may need none).</summary>
    public Secret? ApiKey { get; set; }

    /// <summary>
    /// The <c>anthropic-version</c> header.
    /// <value>The default is <c>2023-06-01</c>.</value>
    /// </summary>
    public string AnthropicVersion { get; set; } = "2023-06-01";

    /// <summary>
    /// How long one attempt may take, headers and body.
    /// <value>The default is 10 minutes.</value>
    /// </summary>
    public TimeSpan RequestTimeout { get; set; } = TimeSpan.FromMinutes(10);

    /// <summary>
    /// The largest answer body read; a larger one fails the attempt.
    /// <value>The default is 64 MiB.</value>
    /// </summary>
    public int MaxResponseBytes { get; set; } = 64 * 1024 * 1024;

    /// <summary>
    /// Whether the upstream has a native batch API (OpenAI's files and batches, Anthropic's
    /// message batches) that batches in <c>native</c> mode can be handed to.
    /// <value>The default is true for <see cref="UpstreamKind.Anthropic"/> and for OpenAI at
    /// <c>api.openai.com</c>, false for other OpenAI-compatible servers.</value>
    /// </summary>
    public bool? BatchApi { get; set; }

    /// <summary>
    /// Whether the upstream offers OpenAI's flex tier (<c>service_tier: "flex"</c>: the batch
    /// price, answered synchronously, refused with 429 <c>resource_unavailable</c> when capacity
    /// is short) for the models it serves: batches in <c>flex</c> mode, and the planner, use it.
    /// <value>The default is false: an upstream has it only when declared.</value>
    /// </summary>
    public bool Flex { get; set; }

    /// <summary>
    /// Whether this upstream's batch API runs requests to <paramref name="endpoint"/>: Anthropic's
    /// message batches take <c>/v1/messages</c>, OpenAI's batches the other endpoints.
    /// </summary>
    public bool RunsBatchesAt(string endpoint) => HasBatchApi && (Kind == UpstreamKind.Anthropic) == (endpoint == Formats.BatchEndpoints.Messages);

    /// <summary>Whether this upstream's flex tier takes requests to <paramref name="endpoint"/>: OpenAI's, declared, for the OpenAI endpoints.</summary>
    public bool OffersFlexAt(string endpoint) => Flex && Kind == UpstreamKind.OpenAI && endpoint != Formats.BatchEndpoints.Messages;

    /// <summary>Whether a native batch API is there: as <see cref="BatchApi"/> says, or by default for Anthropic and OpenAI's own url.</summary>
    public bool HasBatchApi => BatchApi ?? (Kind == UpstreamKind.Anthropic || BaseUrl is null || string.Equals(BaseUrl.Host, OpenAIDefaultBaseUrl.Host, StringComparison.OrdinalIgnoreCase));

    /// <summary>The limits of the lane that serves <paramref name="model"/>.</summary>
    public LaneLimits LimitsFor(string model) =>
        ModelLimits.TryGetValue(model, out var limits) ? limits.Over(Limits) : Limits;

    /// <summary>Adds this upstream's credentials (and Anthropic's version header) to <paramref name="request"/>.</summary>
    internal void Authorize(HttpRequestMessage request)
    {
        if (Kind == UpstreamKind.Anthropic)
        {
            request.Headers.TryAddWithoutValidation("anthropic-version", AnthropicVersion);
            if (ApiKey is { } key)
            {
                request.Headers.TryAddWithoutValidation("x-api-key", key.Reveal());
            }
        }
        else if (ApiKey is { } key)
        {
            request.Headers.TryAddWithoutValidation("Authorization", "Bearer " + key.Reveal());
        }
    }

    /// <summary>True when this upstream serves <paramref name="model"/>.</summary>
    public bool Serves(string model) => Models is not { Count: > 0 } models || models.Contains(model, StringComparer.Ordinal);

    internal UpstreamOptions Validated()
    {
        var baseUrl = BaseUrl ?? (Kind == UpstreamKind.Anthropic ? AnthropicDefaultBaseUrl : OpenAIDefaultBaseUrl);
        if (!baseUrl.IsAbsoluteUri || (baseUrl.Scheme != Uri.UriSchemeHttp && baseUrl.Scheme != Uri.UriSchemeHttps))
        {
            throw new ArgumentException($"The base url must be an absolute http or https url, not '{baseUrl}'.", nameof(BaseUrl));
        }

        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(RequestTimeout, TimeSpan.Zero);
        ArgumentOutOfRangeException.ThrowIfLessThan(MaxResponseBytes, 1024);
        ArgumentException.ThrowIfNullOrWhiteSpace(AnthropicVersion);
        ArgumentOutOfRangeException.ThrowIfLessThan(Weight, 1);
        var name = string.IsNullOrWhiteSpace(Name) ? baseUrl.Authority : Name;
        Limits.Validate($"upstream {name}");
        foreach (var (model, limits) in ModelLimits)
        {
            limits.Validate($"upstream {name}, model {model}");
        }

        return new UpstreamOptions
        {
            Name = name,
            Weight = Weight,
            Models = Models is { Count: > 0 } models ? [.. models] : null,
            Limits = Limits.Over(new LaneLimits()),
            ModelLimits = ModelLimits.ToDictionary(p => p.Key, p => p.Value.Over(new LaneLimits()), StringComparer.Ordinal),
            Kind = Kind,
            BaseUrl = baseUrl,
            ApiKey = ApiKey,
            AnthropicVersion = AnthropicVersion,
            RequestTimeout = RequestTimeout,
            MaxResponseBytes = MaxResponseBytes,
            Flex = Flex,
            BatchApi = HasBatchApi,
        };
    }
}
