using Polly.CircuitBreaker;
using Shepherd.Engine.Upstreams;

namespace Shepherd.Engine.Dispatch;

/// <summary>What a lane set aside for one request: when it went and how many tokens it was counted as.</summary>
internal readonly record struct Reservation(long Sequence, DateTimeOffset SentAt, double Tokens);

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
    private static readonly TimeSpan SendHistory = TimeSpan.FromMinutes(2);

    private readonly bool _requestsConfigured;
    private readonly bool _tokensConfigured;
    private readonly Queue<(long Sequence, DateTimeOffset At, double Tokens)> _sends = new();
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
        _requests = limits.RequestsPerMinute is { } rpm ? new RateBucket(rpm, now) : null;
        _tokens = limits.TokensPerMinute is { } tpm ? new RateBucket(tpm, now) : null;
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

    /// <summary>The state of the smooth weighted round robin among lanes of one model.</summary>
    public int CurrentWeight { get; set; }

    /// <summary>The tokens a request is counted as: its prompt plus its output limit, or the learned average output.</summary>
    public double TokensFor(int promptTokens, int? maxOutputTokens) => promptTokens + (maxOutputTokens ?? _averageOutput);

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

        switch (Upstream.State)
        {
            case CircuitState.Open or CircuitState.Isolated when Upstream.OpenUntil is { } open && now < open:
                return open - now;
            case CircuitState.HalfOpen or CircuitState.Open when Concurrency.InFlight > 0:
                // One probe at a time while the upstream is recovering.
                return null;
        }

        if (!Concurrency.HasRoom)
        {
            return null;
        }

        var requestWait = _requests?.WaitFor(1, now) ?? TimeSpan.Zero;
        var tokenWait = _tokens?.WaitFor(tokens, now) ?? TimeSpan.Zero;
        return requestWait > tokenWait ? requestWait : tokenWait;
    }

    public Reservation Admit(double tokens, DateTimeOffset now)
    {
        Concurrency.Acquire();
        _requests?.Add(1, now);
        _tokens?.Add(tokens, now);
        var reservation = new Reservation(++_sequence, now, tokens);
        _sends.Enqueue((reservation.Sequence, now, tokens));
        while (_sends.Count > 0 && now - _sends.Peek().At > SendHistory)
        {
            _sends.Dequeue();
        }

        return reservation;
    }

    /// <summary>Takes back a reservation whose request never reached the upstream (its breaker was open).</summary>
    public void Cancel(Reservation reservation, DateTimeOffset now)
    {
        Concurrency.Release();
        _requests?.Add(-1, now);
        _tokens?.Add(-reservation.Tokens, now);
    }

    /// <summary>Learns from an answer: concurrency, pauses, real usage, and the provider's own count.</summary>
    public void Complete(Reservation reservation, UpstreamResponse response, int inputTokens, int outputTokens, DateTimeOffset now)
    {
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
            SetLimit(ref _requests, rpm, now);
        }

        if (!_tokensConfigured && limits.TokenLimit is { } tpm and > 0)
        {
            SetLimit(ref _tokens, tpm, now);
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
            _tokens.Sync(tokensReset.TotalSeconds * perSecond, reservation.SentAt, SentAfter(reservation, tokens: true), now);
        }
    }

    /// <summary>False when sends after the reservation were already forgotten, so the provider's count cannot be brought up to date.</summary>
    private bool RemembersSendsAfter(Reservation reservation) =>
        _sends.Count == 0 || _sends.Peek().Sequence <= reservation.Sequence + 1;

    private IEnumerable<(DateTimeOffset, double)> SentAfter(Reservation reservation, bool tokens) =>
        _sends.Where(s => s.Sequence > reservation.Sequence).Select(s => (s.At, tokens ? s.Tokens : 1.0));

    private static void SetLimit(ref RateBucket? bucket, long perMinute, DateTimeOffset now)
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
