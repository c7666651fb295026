using System.Threading.Channels;
using Microsoft.Extensions.Logging;
using Shepherd.Engine.Model;
using Shepherd.Engine.Pricing;
using Shepherd.Engine.Storage;
using Shepherd.Engine.Upstreams;

namespace Shepherd.Engine.Dispatch;

/// <summary>
/// Sends the items of active batches to their upstreams as fast as each lane's limits allow.
/// Items are leased from the store per model (higher priority first) into a local queue; a
/// single loop owns every lane's state (buckets, concurrency, pauses) and admits an item to
/// a lane (an upstream serving its model, by weight) when the lane has room; answers come back
/// to the loop as events. Outcomes are group-committed: many in one transaction, so the store
/// is never what limits throughput. A transient failure goes back to the store with the time
/// of its next attempt, so a pending retry survives a restart; a 429 or an upstream outage only
/// puts the item back in the local queue, without using up its attempts.
/// </summary>
public sealed partial class Dispatcher
{
    private readonly IBatchStore _store;
    private readonly IReadOnlyList<UpstreamEndpoint> _upstreams;
    private readonly DispatchOptions _options;
    private readonly TimeProvider _time;
    private readonly OutcomePolicy _policy;
    private readonly TokenEstimator _estimator;
    private readonly PriceTable _prices;
    private readonly ILogger _logger;
    private readonly BatchWaiters _waiters = new();
    private readonly DispatchSignals _signals = new();

    /// <summary>Creates a dispatcher over one or more upstreams; the options are copied.</summary>
    public Dispatcher(
        IBatchStore store,
        IEnumerable<UpstreamClient> upstreams,
        DispatchOptions options,
        TimeProvider timeProvider,
        Random random,
        TokenEstimator estimator,
        PriceTable prices,
        ILogger<Dispatcher> logger)
    {
        ArgumentNullException.ThrowIfNull(store);
        ArgumentNullException.ThrowIfNull(upstreams);
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(timeProvider);
        ArgumentNullException.ThrowIfNull(random);
        ArgumentNullException.ThrowIfNull(estimator);
        ArgumentNullException.ThrowIfNull(prices);
        ArgumentNullException.ThrowIfNull(logger);
        _store = store;
        _options = options.Validated();
        _time = timeProvider;
        _policy = OutcomePolicy.ForLanes(_options, random);
        _estimator = estimator;
        _prices = prices;
        _logger = logger;
        _upstreams = [.. upstreams.Select(client => new UpstreamEndpoint(client, _options))];
        if (_upstreams.Count == 0)
        {
            throw new ArgumentException("At least one upstream is needed.", nameof(upstreams));
        }

        var names = _upstreams.GroupBy(u => u.Name, StringComparer.Ordinal).FirstOrDefault(g => g.Count() > 1);
        if (names is not null)
        {
            throw new ArgumentException($"Two upstreams are named '{names.Key}'; give each its own name.", nameof(upstreams));
        }
    }

    /// <summary>Live counters for progress displays.</summary>
    public DispatchCounters Counters { get; } = new();

    /// <summary>Where metrics and spans go; none until the host sets it.</summary>
    public DispatchTelemetry? Telemetry { get; set; }

    /// <summary>Every lane as the dispatcher last saw it (refreshed at least once a second while it runs).</summary>
    public IReadOnlyList<LaneState> Lanes => _signals.Lanes;

    /// <summary>Each upstream's circuit breaker now.</summary>
    public IEnumerable<BreakerSnapshot> Breakers => _upstreams.Select(u => new BreakerSnapshot(u.Name, u.Breaker.State));

    /// <summary>
    /// Requests per second realtime can send of <paramref name="model"/>: over its lanes, each
    /// lane's request limit or, for requests of <paramref name="tokensPerRequest"/> tokens, its
    /// token limit, whichever allows fewer, as configured or learned from the providers' headers;
    /// null when no lane of it knows a limit.
    /// </summary>
    public double? RequestsPerSecond(string model, double? tokensPerRequest = null)
    {
        var rates = Lanes.Where(l => l.Model == model).Select(lane =>
        {
            double? byRequests = lane.RequestsPerMinute is > 0 and var rpm ? rpm / 60 : null;
            double? byTokens = lane.TokensPerMinute is > 0 and var tpm && tokensPerRequest is > 0 and var tokens ? tpm / 60 / tokens : null;
            return byRequests is { } r && byTokens is { } t ? Math.Min(r, t) : byRequests ?? byTokens;
        }).Where(rate => rate is not null).Select(rate => rate!.Value).ToList();
        return rates.Count == 0 ? null : rates.Sum();
    }

    /// <summary>
    /// Answers kept across runs and batches: a claimed request whose answer it holds is answered
    /// from it (at no cost, marked cached) instead of being sent, and each answer sent is kept in
    /// it. Null, the default, for none. The host owns it and disposes it after the dispatcher stops.
    /// </summary>
    public Storage.AnswerCache? AnswerCache { get; set; }

    /// <summary>What the dispatcher and the native runner hold against budgets, told to each other; the host gives both the same.</summary>
    internal BudgetHolds Holds { get; set; } = new();

    /// <summary>Items of active batches not yet ended, as of the dispatcher's last look at the store.</summary>
    public long QueueDepth => _signals.QueueDepth;

    /// <summary>
    /// True when nothing moves until time passes: the loop waits on a timer, no claim or outcome
    /// is on its way, and at most <paramref name="requestsWaitingOnTheClock"/> requests are in
    /// flight. A test on a fake clock moves time only then, so the clock never overtakes work.
    /// </summary>
    internal bool IsQuiet(long requestsWaitingOnTheClock) =>
        _signals.IsParked
        && _signals.ClaimsInFlight == 0
        && _signals.Uncommitted == 0
        && Counters.InFlight <= requestsWaitingOnTheClock;

    /// <summary>
    /// Raised, on the commit loop, after outcomes ended batches (they are now ended, or
    /// finalizing when their result files are still to be written). Handlers must be quick.
    /// </summary>
    public event Action? BatchesEnded;

    /// <summary>The lanes this node has work for (items waiting or in flight), by <see cref="Lane.Key"/>, as of its last look at the store.</summary>
    internal IReadOnlyCollection<string> SendingLanes => _signals.SendingLanes;

    /// <summary>
    /// Tells the dispatcher what the node's last heartbeat saw: on its next look each lane keeps
    /// to its share of the limits. A lane this node has sent on for <paramref name="settle"/>
    /// (long enough for every node that started with it to have said so) takes one part in the
    /// number of nodes sending on it; a lane it only just started on takes one part in the number
    /// of live nodes, since others may be starting on it too.
    /// </summary>
    internal void ShareLanes(ClusterView view, TimeSpan settle)
    {
        ArgumentNullException.ThrowIfNull(view);
        _signals.Cluster = (view, settle);
    }

    /// <summary>
    /// Tells the dispatcher that its leases were taken by other nodes (this node was taken for
    /// dead): the items it holds but has not sent are dropped, not sent; answers to those in
    /// flight find their lease gone and are not recorded.
    /// </summary>
    internal void DropLeases() => _signals.Tell(DispatchEvent.DropLeases);

    /// <summary>Tells the dispatcher that batches changed (new, cancelled), so it need not wait for its next look.</summary>
    public void NotifyBatchesChanged()
    {
        _signals.BatchesChanged();
        _signals.Tell(DispatchEvent.Wake);
    }

    /// <summary>
    /// Sends a realtime call through the lanes, ahead of batch work, and returns its answer: the
    /// provider's (for a stream, with its events still to be relayed), or, when none came by the
    /// call's deadline, the last one an attempt brought (a 429 of the provider's, say), or
    /// Shepherd's own error. Throws <see cref="OperationCanceledException"/> when the caller leaves.
    /// </summary>
    public async Task<RealtimeAnswer> CallAsync(RealtimeCall call, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(call);
        _signals.Tell(new CallEvent(call));
        var wait = call.Deadline - _time.GetUtcNow();
        try
        {
            return await call.Answer.WaitAsync(wait > TimeSpan.Zero ? wait : TimeSpan.Zero, _time, cancellationToken);
        }
        catch (TimeoutException)
        {
            call.Reply(call.Last is { StatusCode: not null } last
                ? RealtimeAnswer.Of(last, call.Attempts)
                : new RealtimeAnswer
                {
                    Attempts = call.Attempts,
                    Error = new RealtimeError(504, "deadline_exceeded", call.Last is { } failed
                        ? $"No answer came before the call's deadline; the last attempt failed: {failed.FailureMessage}."
                        : "No answer came before the call's deadline: its lane was busy with calls ahead of it; call again, or give a longer timeout."),
                });
            return await call.Answer;
        }
        catch (OperationCanceledException)
        {
            call.Reply(new RealtimeAnswer { Attempts = call.Attempts, Error = new RealtimeError(499, "client_closed", "The caller left.") });
            throw;
        }
    }

    /// <summary>True when some upstream serves <paramref name="model"/> (one without a list of models serves every model).</summary>
    public bool Serves(string model) => _upstreams.Any(u => u.Client.Options.Serves(model));

    /// <summary>The most a realtime call of <paramref name="model"/> with <paramref name="body"/> may cost at list price, in billionths of a US dollar: its prompt as counted, and all the output it allows.</summary>
    public long MostCostNanos(string model, byte[] body)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(body);
        var (prompt, output) = _estimator.Estimate(model, body);
        return _prices.Price(model, prompt, output ?? _options.DefaultOutputTokens).Nanos;
    }

    /// <summary>Attempts of realtime calls since the node started, and what they cost in billionths of a US dollar, by tenant ("" on a server without keys).</summary>
    public IReadOnlyDictionary<string, (long Calls, long CostNanos)> RealtimeCost => _signals.RealtimeCost;

    /// <summary>Completes when the batch has ended (completed, cancelled or expired).</summary>
    public async Task WaitForBatchAsync(string batchId, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(batchId);
        // Registered before the store is read, so an ending between the two is not missed.
        var waiter = _waiters.Register(batchId);
        var batch = await _store.GetBatchAsync(batchId, cancellationToken)
            ?? throw new InvalidOperationException($"There is no batch {batchId}.");
        if (batch.HasEnded)
        {
            _waiters.Forget(batchId);
            return;
        }

        await waiter.WaitAsync(cancellationToken);
    }

    /// <summary>
    /// Dispatches the items of <paramref name="onlyBatchId"/>, or of every active batch when it
    /// is null, until <paramref name="stoppingToken"/> is cancelled, or until the options'
    /// <see cref="DispatchOptions.StopWhenKeyRefused"/> or <see cref="DispatchOptions.MaxOutage"/>
    /// give up; the lane that made it give up is then returned. On stop, requests in flight are
    /// abandoned (their items stay leased and run again after a restart); when giving up, they
    /// are waited for. Items claimed but not yet sent are queued again, and every outcome
    /// already received is committed before this returns.
    /// </summary>
    public async Task<LaneState?> RunAsync(string? onlyBatchId, CancellationToken stoppingToken)
    {
        var outcomes = Channel.CreateUnbounded<ItemOutcome>(new UnboundedChannelOptions { SingleReader = true });
        _signals.ForgetUncommitted();
        using var run = CancellationTokenSource.CreateLinkedTokenSource(stoppingToken);
        var committer = CommitLoopAsync(outcomes.Reader, run);
        // The telemetry is taken as the run starts: the host sets it before it runs the dispatcher.
        var context = new DispatchContext(_store, _upstreams, _options, _time, _estimator, _prices, _policy, _signals, _waiters, Counters, Telemetry, _logger, Holds, AnswerCache);
        var loop = new DispatchLoop(context, onlyBatchId, outcomes.Writer);
        try
        {
            await loop.RunAsync(run.Token);
        }
        finally
        {
            outcomes.Writer.TryComplete();
        }

        await committer;
        return loop.StoppedBy;
    }

    /// <summary>A commit group this small waits one turn of the thread pool for more outcomes.</summary>
    private const int SmallCommit = 64;

    private void Take(ChannelReader<ItemOutcome> outcomes, List<ItemOutcome> pending)
    {
        while (pending.Count < _options.MaxCommitBatch && outcomes.TryRead(out var outcome))
        {
            pending.Add(outcome);
        }
    }

    private async Task CommitLoopAsync(ChannelReader<ItemOutcome> outcomes, CancellationTokenSource run)
    {
        var pending = new List<ItemOutcome>(_options.MaxCommitBatch);
        while (await outcomes.WaitToReadAsync(CancellationToken.None))
        {
            Take(outcomes, pending);
            if (pending.Count < SmallCommit)
            {
                // Answers that arrived together are often still on their way through the pool: one
                // turn lets them join, so fewer, larger transactions write each page of the log once.
                await Task.Yield();
                Take(outcomes, pending);
            }

            CommitSummary summary;
            try
            {
                // Not cancellable: outcomes already paid for are written even while stopping.
                var started = _time.GetTimestamp();
                summary = await _store.CommitAsync(pending, _time.GetUtcNow(), CancellationToken.None);
                Telemetry?.Committed(_time.GetElapsedTime(started), pending.Count);
            }
            catch (StoreException ex)
            {
                LogCommitFailed(ex);
                _waiters.FailAll(ex);
                await run.CancelAsync();
                throw;
            }

            _signals.Committed(pending.Count);
            if (RetriesIn(pending) is { } retries)
            {
                _signals.Tell(retries);
            }

            pending.Clear();
            foreach (var batchId in summary.CompletedBatches)
            {
                _waiters.Release(batchId);
                _signals.BatchesChanged();
            }

            if (summary.CompletedBatches.Count > 0)
            {
                BatchesEnded?.Invoke();
            }

            _signals.Tell(DispatchEvent.Wake);
        }
    }

    /// <summary>When the retries just stored fall due, the earliest per model; null when there were none.</summary>
    private static RetriesStoredEvent? RetriesIn(List<ItemOutcome> committed)
    {
        Dictionary<string, DateTimeOffset>? due = null;
        foreach (var outcome in committed)
        {
            if (outcome.Kind == OutcomeKind.Retry)
            {
                due ??= new(StringComparer.Ordinal);
                if (!due.TryGetValue(outcome.Item.Model, out var earliest) || outcome.NextAttemptAt < earliest)
                {
                    due[outcome.Item.Model] = outcome.NextAttemptAt;
                }
            }
        }

        return due is null ? null : new RetriesStoredEvent(due);
    }

    [LoggerMessage(Level = LogLevel.Critical, Message = "The store could not record outcomes; dispatch stops and the items run again after a restart")]
    private partial void LogCommitFailed(Exception exception);
}
