using Shepherd.Engine.Upstreams;

namespace Shepherd.Engine.Dispatch;

/// <summary>
/// What a lane set aside for one request: when it went, its locally counted prompt tokens, its
/// output allowance, and the tokens it was counted as (the prompt scaled by what the provider's
/// counts taught, plus the output).
/// </summary>
internal readonly record struct Reservation(long Sequence, DateTimeOffset SentAt, double PromptTokens, double OutputTokens, double Tokens);

/// <summary>
/// One upstream serving one model, with its own limits: a request bucket and a token bucket
/// (configured, or learned from the provider's rate-limit headers), an adaptive concurrency
/// limit, and a pause that a <c>retry-after</c> puts on the whole lane. Every reservation is
/// corrected from the answer: by its real usage, and by the provider's own count whenever it
/// sends one, which wins over any local estimate. Not thread-safe: the dispatcher's loop owns it.
/// </summary>
internal sealed class Lane
{
    private const double OutputAverageWeight = 0.1;
    private const double CostFactorWeight = 0.1;
    private const int ObservedLevelsKept = 512;
    private static readonly TimeSpan SendHistory = TimeSpan.FromMinutes(2);

    private readonly bool _requestsConfigured;
    private readonly bool _tokensConfigured;
    private readonly Queue<(long Sequence, DateTimeOffset At, double Tokens)> _sends = new();
    private readonly SortedDictionary<long, (DateTimeOffset At, double Level, Reservation Reservation)> _observed = [];
    private readonly double _headroom;
    private RateBucket? _requests;
    private RateBucket? _tokens;
    private double _averageOutput;
    private long _sequence;

    public Lane(UpstreamEndpoint upstream, string model, DispatchOptions options, DateTimeOffset now)
    {
        Upstream = upstream;
        Model = model;
        var limits = upstream.Client.Options.LimitsFor(model);
        _requestsConfigured = limits.RequestsPerMinute is not null;
        _tokensConfigured = limits.TokensPerMinute is not null;
        _headroom = 1 - options.LimitHeadroom;
        _requests = limits.RequestsPerMinute is { } rpm ? new RateBucket(rpm * _headroom, now) : null;
        _tokens = limits.TokensPerMinute is { } tpm ? new RateBucket(tpm * _headroom, now) : null;
        var max = limits.MaxConcurrency ?? options.Concurrency;
        Concurrency = new AdaptiveConcurrency(Math.Min(options.InitialConcurrency, max), max, options.ConcurrencyCoolDown);
        _averageOutput = options.DefaultOutputTokens;
    }

    public UpstreamEndpoint Upstream { get; }

    public string Model { get; }

    public AdaptiveConcurrency Concurrency { get; }

    /// <summary>Until when a <c>retry-after</c> holds the whole lane.</summary>
    public DateTimeOffset PausedUntil { get; private set; }

    /// <summary>True when requests must be counted in tokens: the lane has, or has learned, a token limit.</summary>
    public bool CountsTokens => _tokens is not null;

    /// <summary>Requests per minute the lane keeps to; null while it has no limit.</summary>
    public double? RequestsPerMinute => _requests?.PerMinute;

    /// <summary>Tokens per minute the lane keeps to; null while it has no limit.</summary>
    public double? TokensPerMinute => _tokens?.PerMinute;

    /// <summary>
    /// Provider tokens per locally counted prompt token, learned from the provider's own counts:
    /// a provider that counts characters where the tokenizer counts tokens is matched after a
    /// few answers. The output allowance is counted as it is: providers count it exactly.
    /// </summary>
    public double TokenCostFactor { get; private set; } = 1;

    /// <summary>The state of the smooth weighted round robin among lanes of one model.</summary>
    public int CurrentWeight { get; set; }

    /// <summary>The tokens a request is counted as: its prompt, scaled as the provider's counts taught, plus its output limit or the learned average output.</summary>
    public double TokensFor(int promptTokens, int? maxOutputTokens) => (promptTokens * TokenCostFactor) + (maxOutputTokens ?? _averageOutput);

    /// <summary>
    /// How long before a request of <paramref name="tokens"/> may go: zero when it may go now,
    /// null when it must wait for a request in flight to end.
    /// </summary>
    public TimeSpan? WaitBeforeAdmitting(double tokens, DateTimeOffset now)
    {
        if (now < PausedUntil)
        {
            return PausedUntil - now;
        }

        var breakerWait = Upstream.Breaker.WaitBeforeSending(now, Upstream.InFlight);
        if (breakerWait != TimeSpan.Zero)
        {
            return breakerWait;
        }

        if (!Concurrency.HasRoom)
        {
            return null;
        }

        var requestWait = _requests?.WaitFor(1, now) ?? TimeSpan.Zero;
        var tokenWait = _tokens?.WaitFor(tokens, now) ?? TimeSpan.Zero;
        return requestWait > tokenWait ? requestWait : tokenWait;
    }

    public Reservation Admit(int promptTokens, int? maxOutputTokens, DateTimeOffset now)
    {
        var output = maxOutputTokens ?? _averageOutput;
        var tokens = TokensFor(promptTokens, maxOutputTokens);
        Concurrency.Acquire();
        Upstream.InFlight++;
        _requests?.Add(1, now);
        _tokens?.Add(tokens, now);
        var reservation = new Reservation(++_sequence, now, promptTokens, output, tokens);
        _sends.Enqueue((reservation.Sequence, now, tokens));
        while (_sends.Count > 0 && now - _sends.Peek().At > SendHistory)
        {
            _sends.Dequeue();
        }

        return reservation;
    }

    /// <summary>Ends a request abandoned on stop: nothing is learned from it.</summary>
    public void Abandon()
    {
        Concurrency.Release();
        Upstream.InFlight--;
    }

    /// <summary>Learns from an answer: the breaker, concurrency, pauses, real usage, and the provider's own count.</summary>
    public void Complete(Reservation reservation, UpstreamResponse response, int inputTokens, int outputTokens, DateTimeOffset now)
    {
        Upstream.InFlight--;
        if (UpstreamEndpoint.IsOutage(response))
        {
            Upstream.Breaker.Failed(now);
        }
        else
        {
            Upstream.Breaker.Succeeded();
        }

        var status = response.StatusCode;
        if (status is 429 or 503 or 529 || response.FailureCode == FailureCodes.RequestTimeout)
        {
            Concurrency.Overloaded(now);
            if (status is not null && response.RetryAfter is { } wait && now + wait > PausedUntil)
            {
                PausedUntil = now + wait;
            }
        }
        else if (status is >= 200 and < 300)
        {
            Concurrency.Succeeded();
            _averageOutput += OutputAverageWeight * (outputTokens - _averageOutput);
            _tokens?.Add(inputTokens + outputTokens - reservation.Tokens, now);
        }
        else
        {
            Concurrency.Release();
        }

        if (response.RateLimits is { } limits && RemembersSendsAfter(reservation))
        {
            Learn(limits, reservation, now);
        }
    }

    private void Learn(RateLimitSnapshot limits, Reservation reservation, DateTimeOffset now)
    {
        if (!_requestsConfigured && limits.RequestLimit is { } rpm and > 0)
        {
            SetLimit(ref _requests, rpm * _headroom, now);
        }

        if (!_tokensConfigured && limits.TokenLimit is { } tpm and > 0)
        {
            SetLimit(ref _tokens, tpm * _headroom, now);
        }

        // The provider counted what it admitted up to this request; replay only what went after it.
        if (_requests is not null && limits.RequestsReset is { } requestsReset)
        {
            var perSecond = (limits.RequestLimit ?? _requests.PerMinute) / 60.0;
            _requests.Sync(requestsReset.TotalSeconds * perSecond, reservation.SentAt, SentAfter(reservation, tokens: false), now);
        }

        if (_tokens is not null && limits.TokensReset is { } tokensReset)
        {
            var perSecond = (limits.TokenLimit ?? _tokens.PerMinute) / 60.0;
            var level = tokensReset.TotalSeconds * perSecond;
            LearnCostFactor(reservation, level, perSecond);
            _tokens.Sync(level, reservation.SentAt, SentAfter(reservation, tokens: true), now);
        }
    }

    /// <summary>
    /// The provider's level right after it admitted this request, against its level right after
    /// the request sent just before it (drained for the time between), is what it counted this
    /// request as. Answers arrive out of order, so each level waits for its neighbours.
    /// </summary>
    private void LearnCostFactor(Reservation reservation, double level, double perSecond)
    {
        _observed[reservation.Sequence] = (reservation.SentAt, level, reservation);
        if (_observed.TryGetValue(reservation.Sequence - 1, out var before))
        {
            Sample(before, _observed[reservation.Sequence], perSecond);
        }

        if (_observed.TryGetValue(reservation.Sequence + 1, out var after))
        {
            Sample(_observed[reservation.Sequence], after, perSecond);
        }

        while (_observed.Count > ObservedLevelsKept)
        {
            _observed.Remove(_observed.Keys.First());
        }
    }

    private void Sample((DateTimeOffset At, double Level, Reservation Reservation) before, (DateTimeOffset At, double Level, Reservation Reservation) current, double perSecond)
    {
        var counted = current.Level - Math.Max(0, before.Level - (perSecond * (current.At - before.At).TotalSeconds));
        var prompt = current.Reservation.PromptTokens;
        var countedPrompt = counted - current.Reservation.OutputTokens;
        if (prompt <= 0 || countedPrompt <= 0)
        {
            return;
        }

        var factor = Math.Clamp(countedPrompt / prompt, 0.25, 4);
        TokenCostFactor += CostFactorWeight * (factor - TokenCostFactor);
    }

    /// <summary>False when sends after the reservation were already forgotten, so the provider's count cannot be brought up to date.</summary>
    private bool RemembersSendsAfter(Reservation reservation) =>
        _sends.Count == 0 || _sends.Peek().Sequence <= reservation.Sequence + 1;

    private IEnumerable<(DateTimeOffset, double)> SentAfter(Reservation reservation, bool tokens) =>
        _sends.Where(s => s.Sequence > reservation.Sequence).Select(s => (s.At, tokens ? s.Tokens : 1.0));

    private static void SetLimit(ref RateBucket? bucket, double perMinute, DateTimeOffset now)
    {
        if (bucket is null)
        {
            bucket = new RateBucket(perMinute, now);
        }
        else
        {
            bucket.SetLimit(perMinute);
        }
    }
}
