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
    /// Tokens per minute (prompt plus max output, counted at admission and never given back), as
    /// one limit; null for no limit.
    /// <value>The default is no limit.</value>
    /// </summary>
    public long? TokensPerMinute { get; set; }

    /// <summary>
    /// Input tokens per minute, a limit of its own as Anthropic has it: the prompt at admission,
    /// without what is read from the prompt cache. Null for no limit.
    /// <value>The default is no limit.</value>
    /// </summary>
    public long? InputTokensPerMinute { get; set; }

    /// <summary>
    /// Output tokens per minute, a limit of its own as Anthropic has it: charged at admission from
    /// the request's <c>max_tokens</c>, and what was not written is given back when it is answered.
    /// Null for no limit.
    /// <value>The default is no limit.</value>
    /// </summary>
    public long? OutputTokensPerMinute { get; set; }

    /// <summary>
    /// How the limiter counts the text of a prompt.
    /// <value>The default is <see cref="TokenCounting.Characters"/>: four characters a token.</value>
    /// </summary>
    public TokenCounting TokenCounting { get; set; }

    /// <summary>
    /// The limiter's count of a prompt's text is multiplied by this (1.5 counts half as much again).
    /// <value>The default is 1.</value>
    /// </summary>
    public double TokenScale { get; set; } = 1;

    /// <summary>Tokens the limiter adds for each message of a chat. <value>The default is 0.</value></summary>
    public int TokensPerMessage { get; set; }

    /// <summary>
    /// How many seconds of its limit a bucket holds: 1 enforces the limit per second (OpenAI's
    /// documented rule), 60 allows a minute's worth at once.
    /// <value>The default is 1.</value>
    /// </summary>
    public double BucketSeconds { get; set; } = 1;

    /// <summary>
    /// When set, every limit is multiplied by <see cref="LimitChangeFactor"/> this long after the
    /// first request, and the headers say so from then on.
    /// <value>The default is never.</value>
    /// </summary>
    public TimeSpan? LimitChangeAfter { get; set; }

    /// <summary>What <see cref="LimitChangeAfter"/> multiplies the limits by. <value>The default is 0.5.</value></summary>
    public double LimitChangeFactor { get; set; } = 0.5;

    /// <summary>
    /// Whether answers carry rate-limit headers (<c>x-ratelimit-*</c>, <c>anthropic-ratelimit-*</c>);
    /// without them a client learns of the limits only from 429s and their <c>retry-after</c>.
    /// <value>The default is true.</value>
    /// </summary>
    public bool RateLimitHeaders { get; set; } = true;

    /// <summary>
    /// Whether the rate-limit headers of an answer tell the limits as they are when the answer is
    /// written (after its latency) rather than when the request was admitted.
    /// <value>The default is false: as at admission.</value>
    /// </summary>
    public bool HeadersWhenAnswered { get; set; }

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

    /// <summary>
    /// Share of realtime requests for the flex tier (<c>"service_tier":"flex"</c> on chat
    /// completions, completions or responses) refused 429 <c>resource_unavailable</c>, as OpenAI
    /// does when flex capacity is short. The refusal is not a rate limit: it carries no rate-limit
    /// headers and no <c>retry-after</c>, and counts against no limit.
    /// <value>The default is 0.</value>
    /// </summary>
    public double FlexUnavailableRate { get; set; }

    /// <summary>
    /// How long a batch job (OpenAI batch, Anthropic message batch) takes: it ends this long after
    /// it was created, and each of its lines finishes at a time drawn uniformly before then. A line
    /// meets <see cref="ContextTokens"/>, <see cref="Error500Rate"/>, <see cref="Error503Rate"/> and
    /// <see cref="Error529Rate"/> as a realtime request does, and no rate limit.
    /// <value>The default is 2 seconds.</value>
    /// </summary>
    public TimeSpan BatchLatency { get; set; } = TimeSpan.FromSeconds(2);

    /// <summary>
    /// Share of batch lines that never run: the job's window ends first and they end expired (an
    /// OpenAI batch with any ends <c>expired</c>; an Anthropic one ends with <c>expired</c> results).
    /// <value>The default is 0.</value>
    /// </summary>
    public double BatchExpireShare { get; set; }

    /// <summary>
    /// How long a cancelled batch job stays <c>cancelling</c> (Anthropic: <c>canceling</c>) before it ends.
    /// <value>The default is zero: it ends when the cancel is asked.</value>
    /// </summary>
    public TimeSpan BatchCancelLatency { get; set; }

    /// <summary>
    /// Time between the events of a streamed answer (<c>"stream": true</c>) served over HTTP: the
    /// first goes out after <see cref="Latency"/>, each next one this much later, as a provider
    /// writes tokens while it makes them.
    /// <value>The default is zero: the events go out together.</value>
    /// </summary>
    public TimeSpan StreamInterval { get; set; }

    /// <summary>
    /// True for a provider that ignores <c>stream_options</c>, as some OpenAI-compatible servers
    /// do: its chat and completion streams never carry a usage chunk, even when asked.
    /// </summary>
    public bool StreamWithoutUsage { get; set; }

    /// <summary>
    /// The share of answers to requests that ask for structured output (a JSON schema, a JSON
    /// object, a forced tool) whose JSON does not parse: cut off midway, or wrapped in words.
    /// </summary>
    public double BrokenJsonRate { get; set; }

    /// <summary>The share of answers to structured requests whose JSON parses but breaks the schema: a required field missing, a wrong type, a field not allowed.</summary>
    public double SchemaBreakRate { get; set; }

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

        foreach (var (name, limit) in new[] { (nameof(TokensPerMinute), TokensPerMinute), (nameof(InputTokensPerMinute), InputTokensPerMinute), (nameof(OutputTokensPerMinute), OutputTokensPerMinute) })
        {
            if (limit is { } perMinute)
            {
                ArgumentOutOfRangeException.ThrowIfLessThan(perMinute, 1L, name);
            }
        }

        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(TokenScale, 0);
        ArgumentOutOfRangeException.ThrowIfNegative(TokensPerMessage);
        ArgumentOutOfRangeException.ThrowIfLessThan(BucketSeconds, 0.05);
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(LimitChangeFactor, 0);
        if (LimitChangeAfter is { } change)
        {
            ArgumentOutOfRangeException.ThrowIfLessThan(change, TimeSpan.Zero, nameof(LimitChangeAfter));
        }

        foreach (var (name, rate) in new[]
        {
            (nameof(Error500Rate), Error500Rate), (nameof(Error502Rate), Error502Rate), (nameof(Error503Rate), Error503Rate), (nameof(Error529Rate), Error529Rate),
            (nameof(ResetRate), ResetRate), (nameof(HangRate), HangRate), (nameof(FlexUnavailableRate), FlexUnavailableRate), (nameof(BatchExpireShare), BatchExpireShare),
        })
        {
            if (rate is < 0 or > 1 || double.IsNaN(rate))
            {
                throw new ArgumentOutOfRangeException(name, rate, "A rate or share is between 0 and 1.");
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

        ArgumentOutOfRangeException.ThrowIfLessThan(BatchLatency, TimeSpan.Zero, nameof(BatchLatency));
        ArgumentOutOfRangeException.ThrowIfLessThan(BatchCancelLatency, TimeSpan.Zero, nameof(BatchCancelLatency));
        ArgumentOutOfRangeException.ThrowIfLessThan(DefaultMaxTokens, 1);
        if (ContextTokens is { } context)
        {
            ArgumentOutOfRangeException.ThrowIfLessThan(context, 1, nameof(ContextTokens));
        }

        return (SimulatorOptions)MemberwiseClone();
    }
}
