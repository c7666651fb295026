namespace Shepherd.Simulator;

/// <summary>How the simulated provider behaves: how fast, how limited, how faulty.</summary>
public sealed class SimulatorOptions
{
    /// <summary>
    /// Time to answer an admitted request.
    /// <value>The default is zero.</value>
    /// </summary>
    public TimeSpan Latency { get; set; }

    /// <summary>
    /// The latency varies uniformly by up to this much either way.
    /// <value>The default is zero.</value>
    /// </summary>
    public TimeSpan Jitter { get; set; }

    /// <summary>
    /// Requests per minute, enforced per second like real providers; null for no limit.
    /// <value>The default is no limit.</value>
    /// </summary>
    public int? RequestsPerMinute { get; set; }

    /// <summary>
    /// Tokens per minute (prompt plus max output, counted at admission), enforced per second;
    /// null for no limit.
    /// <value>The default is no limit.</value>
    /// </summary>
    public long? TokensPerMinute { get; set; }

    /// <summary>Share of admitted requests answered 500. <value>The default is 0.</value></summary>
    public double Error500Rate { get; set; }

    /// <summary>Share of admitted requests answered 502 with an HTML page, as a proxy in front of a provider does. <value>The default is 0.</value></summary>
    public double Error502Rate { get; set; }

    /// <summary>Share of admitted requests answered 503. <value>The default is 0.</value></summary>
    public double Error503Rate { get; set; }

    /// <summary>Share of admitted requests answered 529 (overloaded). <value>The default is 0.</value></summary>
    public double Error529Rate { get; set; }

    /// <summary>Share of admitted requests whose connection is reset. <value>The default is 0.</value></summary>
    public double ResetRate { get; set; }

    /// <summary>Share of admitted requests never answered (the client must time out). <value>The default is 0.</value></summary>
    public double HangRate { get; set; }

    /// <summary>
    /// When set, 5xx answers carry a <c>retry-after</c> of this many whole seconds (and
    /// <c>retry-after-ms</c>), as some providers send on every error.
    /// <value>The default is none.</value>
    /// </summary>
    public TimeSpan? ErrorRetryAfter { get; set; }

    /// <summary>When set, requests must present this key (Bearer or x-api-key); others are refused with <see cref="RefusedKeyStatus"/>.</summary>
    public string? ApiKey { get; set; }

    /// <summary>
    /// How a request without <see cref="ApiKey"/> is refused: 401 (an unknown key: OpenAI's
    /// <c>invalid_api_key</c>, Anthropic's <c>authentication_error</c>) or 403 (a key without the
    /// right: Anthropic's <c>permission_error</c>, as for a model the key may not use).
    /// <value>The default is 401.</value>
    /// </summary>
    public int RefusedKeyStatus { get; set; } = 401;

    /// <summary>
    /// Output tokens when a request names no limit.
    /// <value>The default is 64.</value>
    /// </summary>
    public int DefaultMaxTokens { get; set; } = 64;

    /// <summary>
    /// The most prompt tokens a request may hold; a longer prompt is answered 400
    /// <c>context_length_exceeded</c>, a permanent failure, as real providers do. Null for no limit.
    /// <value>The default is no limit.</value>
    /// </summary>
    public int? ContextTokens { get; set; }

    /// <summary>The share of requests that meet a fault of any kind.</summary>
    public double FaultRate => Error500Rate + Error502Rate + Error503Rate + Error529Rate + ResetRate + HangRate;

    internal SimulatorOptions Validated()
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(Latency, TimeSpan.Zero);
        ArgumentOutOfRangeException.ThrowIfLessThan(Jitter, TimeSpan.Zero);
        if (RequestsPerMinute is { } rpm)
        {
            ArgumentOutOfRangeException.ThrowIfLessThan(rpm, 1, nameof(RequestsPerMinute));
        }

        if (TokensPerMinute is { } tpm)
        {
            ArgumentOutOfRangeException.ThrowIfLessThan(tpm, 1L, nameof(TokensPerMinute));
        }

        foreach (var (name, rate) in new[]
        {
            (nameof(Error500Rate), Error500Rate), (nameof(Error502Rate), Error502Rate), (nameof(Error503Rate), Error503Rate), (nameof(Error529Rate), Error529Rate),
            (nameof(ResetRate), ResetRate), (nameof(HangRate), HangRate),
        })
        {
            if (rate is < 0 or > 1 || double.IsNaN(rate))
            {
                throw new ArgumentOutOfRangeException(name, rate, "A fault rate is a share between 0 and 1.");
            }
        }

        if (FaultRate > 1)
        {
            throw new ArgumentException("The fault rates add up to more than 1.");
        }

        if (ErrorRetryAfter is { } retryAfter)
        {
            ArgumentOutOfRangeException.ThrowIfLessThan(retryAfter, TimeSpan.Zero, nameof(ErrorRetryAfter));
        }

        if (RefusedKeyStatus is not (401 or 403))
        {
            throw new ArgumentOutOfRangeException(nameof(RefusedKeyStatus), RefusedKeyStatus, "A refused key is answered 401 or 403.");
        }

        ArgumentOutOfRangeException.ThrowIfLessThan(DefaultMaxTokens, 1);
        if (ContextTokens is { } context)
        {
            ArgumentOutOfRangeException.ThrowIfLessThan(context, 1, nameof(ContextTokens));
        }

        return (SimulatorOptions)MemberwiseClone();
    }
}
