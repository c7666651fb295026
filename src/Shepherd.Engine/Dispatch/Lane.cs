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
internal sealed class Lane
{
    private const double OutputAverageWeight = 0.1;
    private const double CostFactorWeight = 0.2;
    private const int ObservedLevelsKept = 512;

    /// <summary>
    /// The provider's count is compared over this many requests at a time: requests sent at
    /// nearly the same moment may reach it in another order, and over a run of them the few that
    /// swap places at either end matter little.
    /// </summary>
    private const int CostWindow = 8;
    private const double MinCostFactor = 0.25;
    private const double MaxCostFactor = 4;

    /// <summary>How far apart two requests must go for the provider to see them in the order they went.</summary>
    private static readonly TimeSpan Apart = TimeSpan.FromMilliseconds(5);

    /// <summary>What a 429 adds to the margin of the lane's buckets, and the most they hold back.</summary>
    private const double MarginStep = 0.1;
    private const double MaxMargin = 0.75;
    private const double InitialMargin = 0.5;

    /// <summary>What each answer that is not a 429 takes off the margin: about one 429 in a hundred answers keeps it where it is.</summary>
    private const double MarginRelief = 0.001;
    private static readonly TimeSpan MarginCoolDown = TimeSpan.FromMilliseconds(200);

    /// <summary>What a 429 multiplies the rate by when the provider says nothing of its level, and how fast the rate comes back (a share per answer).</summary>
    private const double RateCut = 0.85;
    private const double RateRecoveryPerAnswer = 0.0015;
    private static readonly TimeSpan InferenceWindow = TimeSpan.FromSeconds(2);
    private const double LatencyWeight = 0.1;

    private readonly LaneLimit[] _limits;
    private readonly SendHistory _sends = new();
    private readonly SortedDictionary<long, (DateTimeOffset At, double Level)> _observed = [];
    private readonly SortedSet<long> _sampledWindows = [];
    private readonly double _headroom;
    private readonly FailureWindow _failures = new();
    private readonly int _refusalsToStop;
    private readonly TimeSpan _refusedKeyProbeInterval;
    private int _refusals;
    private DateTimeOffset _nextKeyProbe;
    private double _share = 1;
    private double _rateScale = 1;
    private DateTimeOffset _lastRateCut = DateTimeOffset.MinValue;
    private DateTimeOffset _lastMarginStep = DateTimeOffset.MinValue;
    private DateTimeOffset? _firstSend;
    private TimeSpan _latency = TimeSpan.FromMilliseconds(500);
    private double _averageOutput;
    private long _sequence;

    public Lane(UpstreamEndpoint upstream, string model, DispatchOptions options, DateTimeOffset now)
    {
        Upstream = upstream;
        Model = model;
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
    public double TokenCostFactor => _costFactor + Math.Sqrt(_costFactorVariance);

    private double _costFactor = 1;
    private double _costFactorVariance;
    private int _costSamples;

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
            LearnFromWindowOf(reservation.Sequence, prompts.PerMinute / 60);
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

    private void Learn(RateLimitSnapshot snapshot, SentRequest reservation, DateTimeOffset now)
    {
        var changed = false;
        foreach (var limit in _limits)
        {
            if (snapshot.LimitOf(limit.Kind) is { } announced and > 0)
            {
                changed |= limit.Announce(announced, reservation.Sequence);
            }
        }

        if (changed)
        {
            ApplyLimits(now);
        }

        // The provider counted what it admitted up to this request; replay only what went after it.
        // Where nodes share the lane, the provider's level is theirs together: this node takes its share of it.
        foreach (var limit in _limits)
        {
            if (limit.Bucket is not { } bucket || snapshot.ResetOf(limit.Kind) is not { } reset)
            {
                continue;
            }

            limit.Observed = true;
            var perSecond = (snapshot.LimitOf(limit.Kind) ?? limit.PerMinute!.Value) / 60.0;
            var level = reset.TotalSeconds * perSecond;
            // A 429's level is the provider's without that request: as good an observation, since
            // the rejected request is left out of the sums too. With other nodes on the lane the
            // level's rise holds their requests too, so nothing is learned from it then.
            if (limit == PromptLimit && _share == 1)
            {
                LearnCostFactor(reservation, level, perSecond);
            }

            bucket.Sync(level * _share, reservation.At, _sends.After(reservation.Sequence).Select(s => (s.At, limit.CostOf(s))), now);
        }
    }

    /// <summary>
    /// A 429: the lane's picture of the provider was too hopeful. Where the provider says how full
    /// it is, each bucket holds back more of its second's worth; where it says nothing, the rate
    /// itself comes down (from the rate the lane was sending at, when nothing set a limit). Once
    /// per cool-down: one burst of 429s is one lesson.
    /// </summary>
    private void RateLimited(DateTimeOffset now)
    {
        if (now - _lastMarginStep >= MarginCoolDown)
        {
            // 429s that come together were sent together: they are one lesson.
            _lastMarginStep = now;
            foreach (var limit in _limits)
            {
                if (limit.Bucket is { } bucket && limit.Observed)
                {
                    bucket.Margin = Math.Min(MaxMargin, bucket.Margin + MarginStep);
                }
            }
        }

        if (_limits.Any(l => l.Observed))
        {
            return;
        }

        if (now - _lastRateCut >= RateCutCoolDown)
        {
            CutRate(now);
        }

        foreach (var limit in _limits)
        {
            // The provider is full: what the lane sends after the pause goes at the rate, not as a burst into a bucket it believes empty.
            limit.Bucket?.Fill(now);
        }
    }

    /// <summary>
    /// Cuts the rate of a lane the provider says nothing of its level to: by <see cref="RateCut"/>,
    /// or by more when more of the requests since the last cut were turned away (the limit fell).
    /// Where nothing sets a limit, the first cut starts from what the provider took lately.
    /// </summary>
    /// <summary>How long a rate cut takes to show: about the time an answer takes (between 50 ms and a second).</summary>
    private TimeSpan RateCutCoolDown => TimeSpan.FromTicks(Math.Clamp(_latency.Ticks, TimeSpan.TicksPerMillisecond * 50, TimeSpan.TicksPerSecond));

    private void CutRate(DateTimeOffset now)
    {
        var requests = Limit(LimitKind.Requests);
        var (sent, taken) = _sends.CountSince(_lastRateCut);
        if (_limits.All(l => l.PerMinute is null))
        {
            // What the provider took over the last seconds, counted over at least a second: the first wave, sent at once, is not a rate.
            var window = Math.Min(InferenceWindow.TotalSeconds, (now - (_firstSend ?? now)).TotalSeconds);
            requests.Inferred = Math.Max(1, _sends.CountSince(now - TimeSpan.FromSeconds(window)).Taken / Math.Max(1, window) * 60);
        }
        var cut = Math.Min(RateCut, Math.Max(0.5, sent == 0 ? 1 : (double)taken / sent));
        if (requests.IsInferred)
        {
            requests.Inferred *= cut;
        }
        else
        {
            _rateScale = Math.Max(0.05, _rateScale * cut);
        }

        _lastRateCut = now;
        ApplyLimits(now);
    }

    /// <summary>An answer that is not a 429: the margins shrink a little, and a rate cut for 429s recovers with time.</summary>
    private void Relieve(SentRequest answered, DateTimeOffset now)
    {
        foreach (var limit in _limits)
        {
            if (limit.Bucket is { Margin: > 0 } bucket)
            {
                bucket.Margin = Math.Max(0, bucket.Margin - MarginRelief);
            }
        }

        var requests = Limit(LimitKind.Requests);
        // Only an answer to a request sent after the last cut speaks of the rate as it is now.
        if ((_rateScale < 1 || requests.IsInferred) && answered.At > _lastRateCut)
        {
            // A rate cut for 429s comes back answer by answer (so about one answer in a hundred is a
            // 429 however slow the lane goes): a configured rate up to itself, an inferred one on up until the next 429.
            if (requests.IsInferred)
            {
                requests.Inferred *= 1 + RateRecoveryPerAnswer;
            }
            else
            {
                _rateScale = Math.Min(1, _rateScale * (1 + RateRecoveryPerAnswer));
            }

            ApplyLimits(now);
        }
    }

    /// <summary>Sets each bucket to its limit, less the headroom, at this node's share and the rate 429s allow; makes the buckets of limits newly known.</summary>
    private void ApplyLimits(DateTimeOffset? now)
    {
        foreach (var limit in _limits)
        {
            if (limit.PerMinute is not { } perMinute)
            {
                continue;
            }

            var keep = perMinute * _headroom * _share * _rateScale;
            if (limit.Bucket is null)
            {
                // A new lane knows least about how the provider counts: it starts with a margin, which its answers wear down.
                limit.Bucket = new RateBucket(keep, now ?? DateTimeOffset.MinValue) { Margin = InitialMargin };
            }
            else
            {
                limit.Bucket.SetLimit(keep);
            }
        }
    }

    /// <summary>
    /// Windows of <see cref="CostWindow"/> requests, by sequence: the rise of the provider's
    /// level from right after the last request of the window before to right after the last
    /// request of this one, plus what drained meanwhile, is what it counted the window's admitted
    /// requests as. A window is read once all of its requests are answered;
    /// answers arrive in any order, so every answer looks at the windows it may complete.
    /// </summary>
    private void LearnCostFactor(SentRequest reservation, double level, double perSecond)
    {
        _observed[reservation.Sequence] = (reservation.At, level);
        while (_observed.Count > ObservedLevelsKept)
        {
            _observed.Remove(_observed.Keys.First());
        }

        LearnFromWindowOf(reservation.Sequence, perSecond);
    }

    private void LearnFromWindowOf(long sequence, double perSecond)
    {
        var window = (sequence - 1) / CostWindow;
        Sample(window, perSecond);
        if (sequence % CostWindow == 0)
        {
            Sample(window + 1, perSecond);
        }
    }

    private void Sample(long window, double perSecond)
    {
        var from = window * CostWindow;
        var to = from + CostWindow;
        if (_sampledWindows.Contains(window) || !_observed.TryGetValue(from, out var start) || !_observed.TryGetValue(to, out var end)
            || !StandsApart(from) || !StandsApart(to))
        {
            return;
        }

        var admitted = new List<SentRequest>(CostWindow);
        for (var sequence = from + 1; sequence <= to; sequence++)
        {
            // Every request in between must be answered: the provider counted those it admitted, and only those.
            if (!_sends.TryGet(sequence, out var sent) || sent.Admitted is null)
            {
                return;
            }

            if (sent.Admitted == true)
            {
                admitted.Add(sent);
            }
        }

        _sampledWindows.Add(window);
        while (_sampledWindows.Count > ObservedLevelsKept)
        {
            _sampledWindows.Remove(_sampledWindows.Min);
        }

        if (admitted.Sum(s => s.PromptTokens) <= 0)
        {
            return;
        }

        // The factor at which the provider's bucket, replayed from its level at the start through
        // the window's admitted requests (draining between them, never below empty), ends at the
        // level it said at the end. The replay grows with the factor, so halving the interval finds it.
        var countsOutput = PromptLimit?.Kind == LimitKind.Tokens;
        double EndLevel(double factor)
        {
            var (level, at) = (start.Level, start.At);
            foreach (var sent in admitted)
            {
                level = Math.Max(0, level - (perSecond * (sent.At - at).TotalSeconds)) + (factor * sent.PromptTokens) + (countsOutput ? sent.OutputTokens : 0);
                at = sent.At;
            }

            return level;
        }

        var (low, high) = (MinCostFactor, MaxCostFactor);
        if (EndLevel(low) >= end.Level || EndLevel(high) <= end.Level)
        {
            // Outside what any plausible count explains (another client on the key, a reset): not a sample.
            return;
        }

        for (var step = 0; step < 24; step++)
        {
            var middle = (low + high) / 2;
            (low, high) = EndLevel(middle) < end.Level ? (middle, high) : (low, middle);
        }

        var factor = (low + high) / 2;
        // The mean plus one deviation: a little over the provider's count costs a little speed,
        // a little under costs 429s. Both move as a weighted average of the samples.
        // The first samples weigh as a plain average, so the lane learns quickly where it starts.
        var weight = Math.Max(CostFactorWeight, 1.0 / ++_costSamples);
        var deviation = factor - _costFactor;
        _costFactor += weight * deviation;
        _costFactorVariance = (1 - weight) * (_costFactorVariance + (weight * deviation * deviation));
    }

    /// <summary>
    /// True when request <paramref name="sequence"/> went apart from the requests before and after
    /// it: requests sent together may reach the provider in any order, and the level it said after
    /// one of them would then hold others, or miss them.
    /// </summary>
    private bool StandsApart(long sequence) =>
        _sends.TryGet(sequence, out var sent)
        && (!_sends.TryGet(sequence - 1, out var before) || sent.At - before.At >= Apart)
        && (!_sends.TryGet(sequence + 1, out var after) || after.At - sent.At >= Apart);
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
