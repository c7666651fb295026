using System.Diagnostics;
using System.Diagnostics.Metrics;
using Shepherd.Engine.Model;
using Shepherd.Engine.Upstreams;

namespace Shepherd.Engine.Dispatch;

/// <summary>
/// What the dispatcher tells monitoring: OpenTelemetry-ready metrics on the <c>Shepherd</c> meter
/// (requests by upstream, model, outcome and status; tokens; cost; latency; retries; rate-limit
/// waits; answers by tier, and from the answer cache, and what they saved; commit latency; in
/// flight, queue depth, each lane's limits, concurrency and state, each upstream's breaker) and
/// a trace span per upstream request on the <c>Shepherd</c> activity source. Tags carry ids and
/// names, never keys or prompt contents.
/// </summary>
public sealed class DispatchTelemetry
{
    /// <summary>The name of the meter and of the activity source.</summary>
    public const string Name = "Shepherd";

    /// <summary>The source of the spans of upstream requests.</summary>
    public static ActivitySource Source { get; } = new(Name);

    /// <summary>Bucket bounds for durations in seconds: from a millisecond to a minute.</summary>
    private static readonly InstrumentAdvice<double> Seconds = new() { HistogramBucketBoundaries = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60] };

    private readonly CountedSeries _requests = new("upstream", "model", "outcome", "status_code");
    private readonly CountedSeries _tokens = new("upstream", "model", "direction");
    private readonly CountedSeries _costNanos = new("model");
    private readonly Histogram<double> _latency;
    private readonly CountedSeries _retries = new("upstream", "model", "reason");
    private readonly CountedSeries _rateLimitWaits = new("model");
    private readonly Histogram<double> _commits;
    private readonly CountedSeries _tierAnswers = new("tier");
    private readonly CountedSeries _tierCostNanos = new("tier");
    private readonly CountedSeries _savedNanos = new("tier");
    private readonly CountedSeries _paidTwice = new();
    private readonly CountedSeries _cacheHits = new();
    private readonly CountedSeries _cacheSavedNanos = new();
    private readonly CountedSeries _calls = new("tenant", "status_code");
    private readonly CountedSeries _callCostNanos = new("tenant");
    private readonly CountedSeries _checked = new("outcome");
    private readonly CountedSeries _reasks = new();
    private readonly CountedSeries _reaskCostNanos = new();

    /// <summary>Creates the instruments on a meter from <paramref name="meters"/>; the gauges read <paramref name="dispatcher"/>.</summary>
    public DispatchTelemetry(IMeterFactory meters, Dispatcher dispatcher)
    {
        ArgumentNullException.ThrowIfNull(meters);
        ArgumentNullException.ThrowIfNull(dispatcher);
        // The factory owns the meter and disposes of it with the host.
        var meter = meters.Create(Name);
        // Counters are read from totals kept here, so each is exported from 0 (with the labels known
        // at the start) before anything happens: a rate or an alert over it then reads 0, not nothing.
        meter.CreateObservableCounter("shepherd.upstream.requests", () => _requests.Read(n => n), "{request}", "Requests sent upstream, by upstream, model, outcome and status code");
        meter.CreateObservableCounter("shepherd.upstream.tokens", () => _tokens.Read(n => n), "{token}", "Tokens the upstreams reported, by upstream, model and direction");
        // Units in braces are annotations, which the Prometheus exporter leaves out of the name;
        // a plain "USD" or "/min" would be appended to it as "_USD" or "_per_min".
        meter.CreateObservableCounter("shepherd.cost.usd", () => _costNanos.Read(n => n / 1e9), "{USD}", "What the answers cost in US dollars, by model");
        _latency = meter.CreateHistogram("shepherd.upstream.duration", "s", "Time from sending a request to its answer", advice: Seconds);
        meter.CreateObservableCounter("shepherd.upstream.retries", () => _retries.Read(n => n), "{request}", "Requests queued again: a transient failure (retry), or a rate limit or outage (requeued, no attempt spent)");
        meter.CreateObservableCounter("shepherd.lane.rate_limit_waits", () => _rateLimitWaits.Read(n => n), "{wait}", "Times requests waited for a lane's request or token rate");
        meter.CreateObservableCounter("shepherd.tier.requests", () => _tierAnswers.Read(n => n), "{request}", "Requests answered, by the tier that answered them: realtime, native (a provider's batch API) or flex");
        meter.CreateObservableCounter("shepherd.tier.cost.usd", () => _tierCostNanos.Read(n => n / 1e9), "{USD}", "What the answers cost in US dollars, by tier");
        meter.CreateObservableCounter("shepherd.tier.saved.usd", () => _savedNanos.Read(n => n / 1e9), "{USD}", "What native and flex answers saved against the list price, in US dollars, by tier");
        meter.CreateObservableCounter("shepherd.native.paid_twice", () => _paidTwice.Read(n => n), "{request}",
            "Lines a provider's batch job answered after the planner had given their requests to realtime (its cancel had not landed in time)");
        meter.CreateObservableCounter("shepherd.cache.hits", () => _cacheHits.Read(n => n), "{request}", "Requests answered from the answer cache, not sent");
        meter.CreateObservableCounter("shepherd.cache.saved.usd", () => _cacheSavedNanos.Read(n => n / 1e9), "{USD}", "What the answers taken from the answer cache cost when they were bought, in US dollars: what the cache saved");
        meter.CreateObservableCounter("shepherd.realtime.calls", () => _calls.Read(n => n), "{request}", "Attempts of realtime calls (the gateway door), by tenant and the upstream's status code");
        meter.CreateObservableCounter("shepherd.realtime.cost.usd", () => _callCostNanos.Read(n => n / 1e9), "{USD}", "What realtime calls cost in US dollars, by tenant");
        meter.CreateObservableCounter("shepherd.output.requests", () => _checked.Read(n => n), "{request}",
            "Requests whose answers were checked against the structured output they asked for, as they ended: valid_first, valid_reasked (after asking again) or invalid");
        meter.CreateObservableCounter("shepherd.output.reasks", () => _reasks.Read(n => n), "{request}", "Answers that did not fit the structured output asked for, asked again");
        meter.CreateObservableCounter("shepherd.output.reask.cost.usd", () => _reaskCostNanos.Read(n => n / 1e9), "{USD}", "What the answers that did not fit and were asked again cost, in US dollars: paid for and thrown away");
        _commits = meter.CreateHistogram("shepherd.store.commit.duration", "s", "Time to record a group of outcomes in the store", advice: Seconds);
        meter.CreateObservableGauge("shepherd.dispatch.in_flight", () => dispatcher.Counters.InFlight, "{request}", "Requests sent and not yet answered");
        meter.CreateObservableGauge("shepherd.queue.depth", () => dispatcher.QueueDepth, "{item}", "Items of active batches not yet ended");
        meter.CreateObservableGauge("shepherd.lane.concurrency_limit", () => Lanes(dispatcher, lane => lane.ConcurrencyLimit), "{request}", "Each lane's current concurrency limit");
        meter.CreateObservableGauge("shepherd.lane.in_flight", () => Lanes(dispatcher, lane => lane.InFlight), "{request}", "Requests in flight per lane");
        meter.CreateObservableGauge("shepherd.lane.requests_per_minute", () => Lanes(dispatcher, lane => lane.RequestsPerMinute), "{request_per_minute}", "The request rate each lane keeps to (this node's share)");
        meter.CreateObservableGauge("shepherd.lane.tokens_per_minute", () => Lanes(dispatcher, lane => lane.TokensPerMinute), "{token_per_minute}", "The token rate each lane keeps to (this node's share)");
        meter.CreateObservableGauge("shepherd.lane.state", () => Lanes(dispatcher, lane => (double)lane.Condition), "{state}",
            "Each lane's state: 0 sending, 1 paused by a retry-after, 2 its upstream down, 3 its key refused");
        meter.CreateObservableGauge("shepherd.upstream.breaker_state", () => dispatcher.Breakers.Select(b => new Measurement<int>((int)b.State, new KeyValuePair<string, object?>("upstream", b.Upstream))),
            "{state}", "Each upstream's circuit breaker: 0 closed, 1 open, 2 half-open");

        foreach (var upstream in dispatcher.Breakers.Select(b => b.Upstream))
        {
            _requests.Start(("upstream", upstream));
            _tokens.Start(("upstream", upstream), ("direction", "input"));
            _tokens.Start(("upstream", upstream), ("direction", "output"));
            _retries.Start(("upstream", upstream), ("reason", "retry"));
            _retries.Start(("upstream", upstream), ("reason", "requeued"));
        }

        _costNanos.Start();
        _rateLimitWaits.Start();
        _paidTwice.Start();
        _cacheHits.Start();
        _cacheSavedNanos.Start();
        _calls.Start();
        _callCostNanos.Start();
        _reasks.Start();
        _reaskCostNanos.Start();
        foreach (var outcome in new[] { "valid_first", "valid_reasked", "invalid" })
        {
            _checked.Start(("outcome", outcome));
        }
        foreach (var tier in new[] { ItemTier.Realtime, ItemTier.Native, ItemTier.Flex })
        {
            _tierAnswers.Start(("tier", TierWord(tier)));
            _tierCostNanos.Start(("tier", TierWord(tier)));
            _savedNanos.Start(("tier", TierWord(tier)));
        }
    }

    /// <summary>One answer (or an abandoned request, without <paramref name="response"/>).</summary>
    internal void Answered(string upstream, string model, string outcome, UpstreamResponse? response, AttemptResult? result, TimeSpan latency)
    {
        var status = response?.StatusCode?.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? response?.FailureCode ?? "none";
        _requests.Add(1, upstream, model, outcome, status);
        if (response is null)
        {
            return;
        }

        _latency.Record(latency.TotalSeconds, new("upstream", upstream), new("model", model));
        if (result is { InputTokens: > 0 } or { OutputTokens: > 0 })
        {
            _tokens.Add(result.InputTokens, upstream, model, "input");
            _tokens.Add(result.OutputTokens, upstream, model, "output");
            _costNanos.Add(result.CostNanos, model);
        }
    }

    /// <summary>A request answered with success by <paramref name="tier"/>, with what it cost and saved.</summary>
    internal void AnsweredBy(ItemTier tier, AttemptResult result)
    {
        var word = TierWord(tier);
        _tierAnswers.Add(1, word);
        _tierCostNanos.Add(result.CostNanos, word);
        _savedNanos.Add(result.SavedNanos, word);
    }

    /// <summary>A request answered from the answer cache, with what its answer cost when it was bought.</summary>
    internal void AnsweredFromCache(AttemptResult result)
    {
        _cacheHits.Add(1);
        _cacheSavedNanos.Add(result.SavedNanos);
    }

    /// <summary>An attempt of a realtime call of <paramref name="tenant"/> (none on a server without keys), with what it cost.</summary>
    internal void CalledRealtime(string? tenant, AttemptResult result)
    {
        var who = tenant ?? "";
        _calls.Add(1, who, result.StatusCode?.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? result.ErrorCode ?? "none");
        _callCostNanos.Add(result.CostNanos, who);
    }

    /// <summary>What a checked answer (<see cref="AttemptResult.Fits"/> set) did to its item: ended it valid or invalid, or had it asked again.</summary>
    internal void Checked(ItemOutcome outcome)
    {
        var (item, kind, result) = (outcome.Item, outcome.Kind, outcome.Result);
        switch (result.Fits)
        {
            case true when kind == OutcomeKind.Succeeded:
                _checked.Add(1, item.Reasks == 0 ? "valid_first" : "valid_reasked");
                break;
            case false when kind == OutcomeKind.Retry:
                _reasks.Add(1);
                _reaskCostNanos.Add(result.CostNanos);
                break;
            case false when kind == OutcomeKind.Failed:
                _checked.Add(1, "invalid");
                break;
        }
    }

    /// <summary>Lines a provider answered after their requests had gone to realtime.</summary>
    internal void PaidTwice(long lines) => _paidTwice.Add(lines);

    /// <summary>A tier's word, as the metrics label it and the batch object names it.</summary>
    public static string TierWord(ItemTier tier) => tier switch
    {
        ItemTier.Native => "native",
        ItemTier.Flex => "flex",
        _ => "realtime",
    };

    internal void Retried(string upstream, string model, string reason) =>
        _retries.Add(1, upstream, model, reason);

    internal void WaitedForRate(string model) => _rateLimitWaits.Add(1, model);

    internal void Committed(TimeSpan duration, int outcomes) =>
        _commits.Record(duration.TotalSeconds, new KeyValuePair<string, object?>("outcomes", outcomes <= 1 ? "1" : outcomes <= 16 ? "2-16" : outcomes <= 128 ? "17-128" : "129+"));

    private static IEnumerable<Measurement<double>> Lanes(Dispatcher dispatcher, Func<LaneState, double?> read) =>
        dispatcher.Lanes
            .Where(lane => read(lane) is not null)
            .Select(lane => new Measurement<double>(read(lane)!.Value, new("upstream", lane.Upstream), new("model", lane.Model)));
}
