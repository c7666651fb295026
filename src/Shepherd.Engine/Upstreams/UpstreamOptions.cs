namespace Shepherd.Engine.Upstreams;

/// <summary>The dialect and authentication an upstream speaks.</summary>
public enum UpstreamKind
{
    /// <summary>OpenAI and every OpenAI-compatible server: <c>Authorization: Bearer</c>.</summary>
    OpenAI,

    /// <summary>Anthropic: <c>x-api-key</c> and <c>anthropic-version</c>.</summary>
    Anthropic,
}

/// <summary>Where requests go and how they authenticate.</summary>
public sealed class UpstreamOptions
{
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
        return new UpstreamOptions
        {
            Kind = Kind,
            BaseUrl = baseUrl,
            ApiKey = ApiKey,
            AnthropicVersion = AnthropicVersion,
            RequestTimeout = RequestTimeout,
            MaxResponseBytes = MaxResponseBytes,
        };
    }
}
