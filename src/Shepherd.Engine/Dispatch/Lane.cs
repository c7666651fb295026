using System.Text.RegularExpressions;
using Shepherd.Engine.Upstreams;

namespace Shepherd.Engine.Dispatch;

/// <summary>
/// One upstream serving one model, with its own limits: a bucket per limit the provider has
/// (<see cref="LaneLimit"/>: configured, announced in its rate-limit headers, or inferred from
/// 429s), an adaptive concurrency limit, and a pause that a <c>retry-after</c> puts on the whole
/// lane. The buckets follow the provider's own count whenever it sends one, which wins over any
/// local estimate; a margin that 429s grow absorbs what the two still differ by, and where the
/// provider says nothing of its level, 429s cut the rate itself. A lane whose key the upstream refuses stops:
/// after the first refusal nothing more goes until the requests in flight are back, and after
/// a few in a row with no other answer between, only a probe now and then. Not thread-safe: the
/// dispatcher's loop owns it.
/// </summary>
internal sealed partial class Lane
{
    private const double OutputAverageWeight = 0.1;
    private const double LatencyWeight = 0.1;

    private readonly LaneLimit[] _limits;
    private readonly SendHistory _sends = new();
    private readonly PromptCostLearner _promptCost;
    private readonly double _headroom;
    private readonly FailureWindow _failures = new();
    private readonly int _refusalsToStop;
    private readonly TimeSpan _refusedKeyProbeInterval;
    private int _refusals;
    private DateTimeOffset _nextKeyProbe;
    private double _share = 1;
    private DateTimeOffset? _firstSend;
    private TimeSpan _latency = TimeSpan.FromMilliseconds(500);
    private double _averageOutput;
    private long _sequence;

    public Lane(UpstreamEndpoint upstream, string model, DispatchOptions options, DateTimeOffset now)
    {
        Upstream = upstream;
        Model = model;
        _promptCost = new PromptCostLearner(_sends);
        var limits = upstream.Client.Options.LimitsFor(model);
        _headroom = 1 - options.LimitHeadroom;
        _limits =
        [
            new(LimitKind.Requests, limits.RequestsPerMinute),
            new(LimitKind.Tokens, limits.TokensPerMinute),
            new(LimitKind.InputTokens, limits.InputTokensPerMinute),
            new(LimitKind.OutputTokens, limits.OutputTokensPerMinute),
        ];
        ApplyLimits(now);
        var max = limits.MaxConcurrency ?? options.Concurrency;
        Concurrency = new AdaptiveConcurrency(Math.Min(options.InitialConcurrency, max), max, options.ConcurrencyCoolDown);
        _averageOutput = options.DefaultOutputTokens;
        // Never more refusals than the lane may have in flight: a lane of one request stops at the first.
        _refusalsToStop = Math.Min(options.RefusalsToStop, max);
        _refusedKeyProbeInterval = options.RefusedKeyProbeInterval;
    }

    public UpstreamEndpoint Upstream { get; }

    /// <summary>The lane's name among nodes sharing a store: nodes that send on a lane of the same name share its limits.</summary>
    public string Key => KeyOf(Upstream.Name, Model);

    /// <summary>The name of the lane of <paramref name="upstream"/> serving <paramref name="model"/>.</summary>
    public static string KeyOf(string upstream, string model) => upstream + "/" + model;

    /// <summary>This node's share of the lane's limits, 0 to 1.</summary>
    public double Share => _share;

    /// <summary>Since when this node has had work for the lane without a break; null while it has none.</summary>
    public DateTimeOffset? SendingSince { get; set; }

    /// <summary>
    /// Gives this node <paramref name="share"/> (0 to 1) of the lane's limits: when several nodes
    /// send on one lane, each keeps to its share, so together they keep to the limit.
    /// </summary>
    public void SetShare(double share)
    {
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(share, 0);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(share, 1);
        _share = share;
        ApplyLimits(null);
    }

    private LaneLimit Limit(LimitKind kind) => _limits[(int)kind];

    public string Model { get; }

    public AdaptiveConcurrency Concurrency { get; }

    /// <summary>Until when a <c>retry-after</c> holds the whole lane.</summary>
    public DateTimeOffset PausedUntil { get; private set; }

    /// <summary>True while transient failures come in a run rather than as a sprinkle among successes (see <see cref="FailureWindow"/>).</summary>
    public bool InFailureRun => _failures.InRun;

    /// <summary>Since when the upstream has refused this lane's key (a few refusals in a row); null while it has not.</summary>
    public DateTimeOffset? RefusedSince { get; private set; }

    /// <summary>The last refusal in words: the status and the provider's message.</summary>
    public string? Refusal { get; private set; }

    /// <summary>True when the lane cannot send but probes: its key is refused, or its upstream down.</summary>
    public bool IsHalted => RefusedSince is not null || Upstream.IsDown;

    /// <summary>
    /// Why the lane cannot send, when it cannot: its key is refused, or its upstream is down.
    /// Null while it can (waiting for its rate or a <c>retry-after</c> is not being stopped).
    /// </summary>
    public LaneHalt? Halt => RefusedSince is { } refused
        ? new LaneHalt(LaneCondition.KeyRefused, refused, Refusal, _nextKeyProbe)
        : Upstream.IsDown
            ? new LaneHalt(LaneCondition.Down, Upstream.DownSince ?? Upstream.Breaker.OpenUntil, Upstream.LastFailure, Upstream.Breaker.OpenUntil)
            : null;

    /// <summary>True when requests must be counted in tokens: the lane has, or has learned, a limit on tokens.</summary>
    public bool CountsTokens => Limit(LimitKind.Tokens).Bucket is not null || Limit(LimitKind.InputTokens).Bucket is not null || Limit(LimitKind.OutputTokens).Bucket is not null;

    /// <summary>Requests per minute the lane keeps to; null while it has no limit.</summary>
    public double? RequestsPerMinute => Limit(LimitKind.Requests).Bucket?.PerMinute;

    /// <summary>Tokens per minute the lane keeps to (input tokens where the provider limits them apart); null while it has no limit.</summary>
    public double? TokensPerMinute => (Limit(LimitKind.Tokens).Bucket ?? Limit(LimitKind.InputTokens).Bucket)?.PerMinute;

    /// <summary>
    /// Provider tokens per locally counted prompt token, learned from the provider's own counts:
    /// a provider that counts characters where the tokenizer counts tokens is matched after a
    /// few answers (the learned mean plus one deviation, to err on the safe side). The output
    /// allowance is counted as it is: providers count it exactly.
    /// </summary>
    public double TokenCostFactor => _promptCost.Factor;

    /// <summary>The state of the smooth weighted round robin among lanes of one model.</summary>
    public int CurrentWeight { get; set; }

    /// <summary>The tokens a request is counted as: its prompt, scaled as the provider's counts taught, plus its output limit or the learned average output.</summary>
    public double TokensFor(int promptTokens, int? maxOutputTokens) => (promptTokens * TokenCostFactor) + (maxOutputTokens ?? _averageOutput);

    /// <summary>
    /// How long before a request of <paramref name="promptTokens"/> and <paramref name="maxOutputTokens"/> may go: zero when it may go now,
    /// null when it must wait for a request in flight to end.
    /// </summary>
    public TimeSpan? WaitBeforeAdmitting(int promptTokens, int? maxOutputTokens, DateTimeOffset now)
    {
        if (now < PausedUntil)
        {
            return PausedUntil - now;
        }

        if (RefusedSince is not null && now < _nextKeyProbe)
        {
            return _nextKeyProbe - now;
        }

        if (_refusals > 0 && Concurrency.InFlight > 0)
        {
            // A refused key: the answers on their way say whether it was one refusal or the key.
            return null;
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

        var sent = Reserve(promptTokens, maxOutputTokens, now);
        var wait = TimeSpan.Zero;
        foreach (var limit in _limits)
        {
            if (limit.Bucket?.WaitFor(limit.CostOf(sent), now) is { } fits && fits > wait)
            {
                wait = fits;
            }
        }

        return wait;
    }

    /// <summary>What a request would be counted as if it went now.</summary>
    private SentRequest Reserve(int promptTokens, int? maxOutputTokens, DateTimeOffset now) =>
        new(_sequence + 1, now, promptTokens, maxOutputTokens ?? _averageOutput, TokensFor(promptTokens, maxOutputTokens));

    public SentRequest Admit(int promptTokens, int? maxOutputTokens, DateTimeOffset now)
    {
        var sent = Reserve(promptTokens, maxOutputTokens, now);
        _firstSend ??= now;
        Concurrency.Acquire();
        Upstream.InFlight++;
        foreach (var limit in _limits)
        {
            limit.Bucket?.Add(limit.CostOf(sent), now);
        }

        if (RefusedSince is not null)
        {
            // A probe of a refused key: one at a time, and the next no sooner than the interval.
            _nextKeyProbe = now + _refusedKeyProbeInterval;
        }

        _sequence = sent.Sequence;
        _sends.Add(sent);
        return sent;
    }

    /// <summary>Ends a request abandoned on stop: nothing is learned from it.</summary>
    public void Abandon()
    {
        Concurrency.Release();
        Upstream.InFlight--;
    }

    /// <summary>
    /// Learns from an answer: the breaker, concurrency, pauses, refusals of the key, real usage,
    /// and the provider's own count. A 429 always means the lane goes too fast. A 503, 529 or
    /// timeout means so only in a run of failures: one among many successes is not congestion,
    /// so it neither halves the concurrency nor pauses the lane.
    /// </summary>
    public LaneChange Complete(SentRequest reservation, UpstreamResponse response, Verdict verdict, int outputTokens, DateTimeOffset now)
    {
        Upstream.InFlight--;
        var change = new LaneChange(Upstream.Record(response, now), RecordRefusal(response, verdict, now));
        var status = response.StatusCode;
        _failures.Add(verdict == Verdict.Transient && status != 429);
        var overload = status is 503 or 529 || response.FailureCode == FailureCodes.RequestTimeout;
        if (status is not null && now > reservation.At)
        {
            _latency += LatencyWeight * (now - reservation.At - _latency);
        }

        // A 429 or a refused key was not admitted: the provider did not count it.
        var admitted = status is not null and not 429 && verdict != Verdict.Refused;
        _sends.Answered(reservation.Sequence, admitted);
        // What the provider says of its buckets comes first: what the answer means for the rate depends on it.
        if (PromptLimit is { Bucket: { } prompts } && _share == 1 && response.RateLimits?.ResetOf(PromptLimit.Kind) is null)
        {
            // An answer without a level of its own may still complete a window.
            _promptCost.LearnFromWindowOf(reservation.Sequence, prompts.PerMinute / 60, PromptLimitCountsOutput);
        }

        if (response.RateLimits is { } limits && _sends.RemembersAfter(reservation.Sequence))
        {
            Learn(limits, reservation, now);
        }

        if (status == 429)
        {
            RateLimited(now);
        }
        else if (status is not null)
        {
            Relieve(reservation, now);
        }

        if (status == 429 || (overload && _failures.InRun))
        {
            Concurrency.Overloaded(now);
            if (status is not null && response.RetryAfter is { } wait && now + wait > PausedUntil)
            {
                PausedUntil = now + wait;
            }
        }
        else if (status is >= 200 and < 300)
        {
            Concurrency.Succeeded(paced: Limit(LimitKind.Requests).Bucket is not null || CountsTokens);
            _averageOutput += OutputAverageWeight * (outputTokens - _averageOutput);
            // Output limits charge the allowance when a request goes and give back what was not written.
            Limit(LimitKind.OutputTokens).Bucket?.Add(outputTokens - reservation.OutputTokens, now);
        }
        else
        {
            Concurrency.Release();
        }

        return change;
    }

    /// <summary>
    /// A request the provider refused for want of capacity on its flex tier: not admitted, and no
    /// lesson about the lane's limits (the provider's rate limits were not what refused it).
    /// </summary>
    public LaneChange Unavailable(SentRequest reservation)
    {
        Upstream.InFlight--;
        _sends.Answered(reservation.Sequence, admitted: false);
        Concurrency.Release();
        return default;
    }

    /// <summary>
    /// Counts refusals of the key in a row: the lane stops after a few, and any HTTP answer that
    /// is not one (the key was taken) starts it again. A failure without an answer says nothing.
    /// </summary>
    private KeyChange RecordRefusal(UpstreamResponse response, Verdict verdict, DateTimeOffset now)
    {
        if (verdict == Verdict.Refused)
        {
            Refusal = Describe(response);
            if (++_refusals < _refusalsToStop || RefusedSince is not null)
            {
                return KeyChange.None;
            }

            RefusedSince = now;
            _nextKeyProbe = now + _refusedKeyProbeInterval;
            return KeyChange.Refused;
        }

        if (response.StatusCode is null)
        {
            return KeyChange.None;
        }

        _refusals = 0;
        if (RefusedSince is null)
        {
            return KeyChange.None;
        }

        RefusedSince = null;
        Refusal = null;
        return KeyChange.Accepted;
    }

    /// <summary>A refusal in words, with the provider's message when it gave one (never with the key, should the message quote it).</summary>
    private string Describe(UpstreamResponse response)
    {
        var message = AttemptClassifier.MessageOf(response.Body)?.Trim();
        if (string.IsNullOrEmpty(message))
        {
            return $"HTTP {response.StatusCode}";
        }

        if (Upstream.Client.Options.ApiKey is { } key)
        {
            // The key as a whole token only: a short local key such as "k" must not mask every k of the message.
            message = Regex.Replace(message, $"(?<![A-Za-z0-9_-]){Regex.Escape(key.Reveal())}(?![A-Za-z0-9_-])", "***", RegexOptions.CultureInvariant, TimeSpan.FromSeconds(1));
        }

        return $"HTTP {response.StatusCode}: {(message.Length > 300 ? message[..300] + "…" : message)}";
    }

    /// <summary>The limit whose level teaches how the provider counts prompts: input tokens where they are apart, else tokens.</summary>
    private LaneLimit? PromptLimit => Limit(LimitKind.InputTokens).Bucket is not null ? Limit(LimitKind.InputTokens) : Limit(LimitKind.Tokens).Bucket is not null ? Limit(LimitKind.Tokens) : null;

    /// <summary>True when the prompt limit is the one on all tokens: the provider counted each request's output allowance into its level too.</summary>
    private bool PromptLimitCountsOutput => PromptLimit?.Kind == LimitKind.Tokens;

}

/// <summary>What an answer changed about a lane: its upstream's breaker, and whether its key is refused.</summary>
internal readonly record struct LaneChange(BreakerChange Breaker, KeyChange Key);

/// <summary>What an answer did to a lane's key.</summary>
internal enum KeyChange
{
    None,

    /// <summary>The lane stopped: the upstream refused its key a few times in a row.</summary>
    Refused,

    /// <summary>The upstream took the key again after refusing it.</summary>
    Accepted,
}
