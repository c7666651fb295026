using System.Collections.Concurrent;
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
    private readonly ILogger _logger;
    private readonly ConcurrentDictionary<string, TaskCompletionSource> _waiters = new(StringComparer.Ordinal);
    private readonly Channel<DispatchEvent> _events = Channel.CreateUnbounded<DispatchEvent>(new UnboundedChannelOptions { SingleReader = true });
    private int _batchesChanged = 1;
    private int _parked;  // the ticket of the wait the loop is parked in; zero while it works
    private int _claimsInFlight;
    private long _uncommitted;
    private readonly PriceTable _prices;
    private IReadOnlyCollection<string> _sendingLanes = [];
    private IReadOnlyList<LaneState> _laneStates = [];
    private long _queueDepth;
    private readonly Lock _clusterLock = new();
    private (ClusterView View, TimeSpan Settle) _cluster = (ClusterView.Alone, TimeSpan.Zero);

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
    public IReadOnlyList<LaneState> Lanes => Volatile.Read(ref _laneStates);

    /// <summary>Each upstream's circuit breaker now.</summary>
    public IEnumerable<BreakerSnapshot> Breakers => _upstreams.Select(u => new BreakerSnapshot(u.Name, u.Breaker.State));

    /// <summary>Items of active batches not yet ended, as of the dispatcher's last look at the store.</summary>
    public long QueueDepth => Interlocked.Read(ref _queueDepth);

    /// <summary>
    /// True when nothing moves until time passes: the loop waits on a timer, no claim or outcome
    /// is on its way, and at most <paramref name="requestsWaitingOnTheClock"/> requests are in
    /// flight. A test on a fake clock moves time only then, so the clock never overtakes work.
    /// </summary>
    internal bool IsQuiet(long requestsWaitingOnTheClock) =>
        Volatile.Read(ref _parked) != 0
        && Volatile.Read(ref _claimsInFlight) == 0
        && Interlocked.Read(ref _uncommitted) == 0
        && Counters.InFlight <= requestsWaitingOnTheClock;

    /// <summary>
    /// Raised, on the commit loop, after outcomes ended batches (they are now ended, or
    /// finalizing when their result files are still to be written). Handlers must be quick.
    /// </summary>
    public event Action? BatchesEnded;

    /// <summary>The lanes this node has work for (items waiting or in flight), by <see cref="Lane.Key"/>, as of its last look at the store.</summary>
    internal IReadOnlyCollection<string> SendingLanes => Volatile.Read(ref _sendingLanes);

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
        lock (_clusterLock)
        {
            _cluster = (view, settle);
        }
    }

    private (ClusterView View, TimeSpan Settle) Cluster()
    {
        lock (_clusterLock)
        {
            return _cluster;
        }
    }

    /// <summary>
    /// Tells the dispatcher that its leases were taken by other nodes (this node was taken for
    /// dead): the items it holds but has not sent are dropped, not sent; answers to those in
    /// flight find their lease gone and are not recorded.
    /// </summary>
    internal void DropLeases() => _events.Writer.TryWrite(DispatchEvent.DropLeases);

    /// <summary>Tells the dispatcher that batches changed (new, cancelled), so it need not wait for its next look.</summary>
    public void NotifyBatchesChanged()
    {
        Volatile.Write(ref _batchesChanged, 1);
        _events.Writer.TryWrite(DispatchEvent.Wake);
    }

    /// <summary>Completes when the batch has ended (completed, cancelled or expired).</summary>
    public async Task WaitForBatchAsync(string batchId, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(batchId);
        // Registered before the store is read, so an ending between the two is not missed.
        var waiter = _waiters.GetOrAdd(batchId, _ => new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously));
        var batch = await _store.GetBatchAsync(batchId, cancellationToken)
            ?? throw new InvalidOperationException($"There is no batch {batchId}.");
        if (batch.HasEnded)
        {
            _waiters.TryRemove(batchId, out _);
            return;
        }

        await waiter.Task.WaitAsync(cancellationToken);
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
        // Outcomes a failed earlier run could not record are gone with its channel (their items
        // stay leased and are released before a new run): they no longer wait for this run's store.
        Interlocked.Exchange(ref _uncommitted, 0);
        using var run = CancellationTokenSource.CreateLinkedTokenSource(stoppingToken);
        var committer = CommitLoopAsync(outcomes.Reader, run);
        var loop = new DispatchLoop(this, onlyBatchId, outcomes.Writer);
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

    /// <summary>Says what an answer changed about a lane, once per change.</summary>
    private void Report(Lane lane, LaneChange change, DateTimeOffset now)
    {
        var upstream = lane.Upstream;
        switch (change.Breaker)
        {
            case BreakerChange.Opened:
                LogDown(upstream.Name, upstream.LastFailure, (upstream.Breaker.OpenUntil - now).TotalSeconds);
                break;
            case BreakerChange.Closed:
                LogReachable(upstream.Name);
                break;
        }

        switch (change.Key)
        {
            case KeyChange.Refused:
                LogKeyRefused(upstream.Name, lane.Model, lane.Refusal, _options.RefusedKeyProbeInterval.TotalSeconds);
                break;
            case KeyChange.Accepted:
                LogKeyAccepted(upstream.Name, lane.Model);
                break;
        }
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
                foreach (var waiter in _waiters.Values)
                {
                    waiter.TrySetException(ex);
                }

                await run.CancelAsync();
                throw;
            }

            Interlocked.Add(ref _uncommitted, -pending.Count);
            if (RetriesIn(pending) is { } retries)
            {
                _events.Writer.TryWrite(retries);
            }

            pending.Clear();
            foreach (var batchId in summary.CompletedBatches)
            {
                if (_waiters.TryRemove(batchId, out var waiter))
                {
                    waiter.TrySetResult();
                }

                Volatile.Write(ref _batchesChanged, 1);
            }

            if (summary.CompletedBatches.Count > 0)
            {
                BatchesEnded?.Invoke();
            }

            _events.Writer.TryWrite(DispatchEvent.Wake);
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

    [LoggerMessage(Level = LogLevel.Debug, Message = "Batch {BatchId} item {CustomId}: attempt {Attempt} on {Upstream} failed ({Reason}); retrying in {DelayMs:0} ms")]
    private partial void LogRetry(string batchId, string customId, int attempt, string upstream, AttemptResult reason, double delayMs);

    [LoggerMessage(Level = LogLevel.Debug, Message = "Batch {BatchId} item {CustomId}: {Upstream} answered {Reason}; the item waits for the lane, without using an attempt")]
    private partial void LogRequeued(string batchId, string customId, string upstream, AttemptResult reason);

    [LoggerMessage(Level = LogLevel.Information, Message = "Batch {BatchId} item {CustomId}: failed after attempt {Attempt} on {Upstream} ({Reason})")]
    private partial void LogFailed(string batchId, string customId, int attempt, string upstream, AttemptResult reason);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Upstream {Upstream} is down ({Reason}); its requests wait without using attempts (next probe in {WaitSeconds:0.#} s)")]
    private partial void LogDown(string upstream, string? reason, double waitSeconds);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Upstream {Upstream} answers again; its requests go")]
    private partial void LogReachable(string upstream);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Upstream {Upstream} refused the key for {Model} ({Reason}); the lane stops and its requests wait without using attempts (a probe every {IntervalSeconds} s)")]
    private partial void LogKeyRefused(string upstream, string model, string? reason, double intervalSeconds);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Upstream {Upstream} takes the key for {Model} again; the lane sends")]
    private partial void LogKeyAccepted(string upstream, string model);

    [LoggerMessage(Level = LogLevel.Critical, Message = "The store could not record outcomes; dispatch stops and the items run again after a restart")]
    private partial void LogCommitFailed(Exception exception);

    /// <summary>What the loop is told: an answer, a claim's result, or just "look again".</summary>
    private abstract record DispatchEvent
    {
        public static readonly DispatchEvent Wake = new WakeEvent();

        public static readonly DispatchEvent DropLeases = new DropLeasesEvent();
    }

    private sealed record WakeEvent : DispatchEvent;

    private sealed record DropLeasesEvent : DispatchEvent;

    /// <summary>Retries are in the store, due at these times (the earliest per model): their queues look for them then, not at their next idle look.</summary>
    private sealed record RetriesStoredEvent(IReadOnlyDictionary<string, DateTimeOffset> Due) : DispatchEvent;

    private sealed record ClaimedEvent(ModelQueue Queue, IReadOnlyList<ClaimedItem> Items, DateTimeOffset? NextDue) : DispatchEvent;

    /// <summary>An answer, already classified where it arrived, so the loop only decides; null when abandoned on stop.</summary>
    private sealed record AnsweredEvent(WorkItem Work, Lane Lane, SentRequest Reservation, UpstreamResponse? Response, Classified Classified) : DispatchEvent;

    /// <summary>A leased item on its way: its url, and its prompt tokens once a lane needed them.</summary>
    private sealed class WorkItem(ClaimedItem item, string url, long order)
    {
        public ClaimedItem Item { get; } = item;

        public string Url { get; } = url;

        public long Order { get; } = order;

        public int? PromptTokens { get; set; }

        public int? MaxOutputTokens { get; set; }

        /// <summary>The cost held against the batch's budget while the request is out.</summary>
        public long ReservedNanos { get; set; }

        /// <summary>The most the request may cost, while it waits for the budget.</summary>
        public long MostNanos { get; set; }
    }

    /// <summary>
    /// A batch's budget as the loop keeps it: what its recorded answers cost, plus the most the
    /// requests now in flight may cost. A request is sent only when both, with its own most,
    /// stay within the limit; so the spending can pass the limit only by what answers exceed
    /// their estimate. A request that would fit once the others' holds settle waits for them
    /// in <see cref="Waiting"/>; only one that does not fit beside what is spent is not sent.
    /// </summary>
    private sealed class Budget(long limit, long spent)
    {
        public long Limit { get; } = limit;

        public long Spent { get; set; } = spent;

        public long Reserved { get; set; }

        /// <summary>Requests taken from their queues to wait for the holds of requests in flight to settle, in order.</summary>
        public Queue<WorkItem> Waiting { get; } = new();
    }

    /// <summary>The items leased for one model, waiting for a lane, highest priority first.</summary>
    private sealed class ModelQueue(string model, IReadOnlyList<Lane> lanes)
    {
        public string Model { get; } = model;

        public IReadOnlyList<Lane> Lanes { get; } = lanes;

        public PriorityQueue<WorkItem, (int Priority, long Order)> Items { get; } = new();

        public bool Claiming { get; set; }

        public DateTimeOffset? NextDue { get; set; }

        public int InFlight { get; set; }

        /// <summary>Items of this model taken out of the queue to wait for their batch's budget.</summary>
        public int Parked { get; set; }

        /// <summary>True when no lane of the model can send now (its key is refused, or its upstream down): only probes go.</summary>
        public bool IsBlocked
        {
            get
            {
                // Asked on every turn of the loop: a plain loop, no enumerator.
                for (var i = 0; i < Lanes.Count; i++)
                {
                    if (!Lanes[i].IsHalted)
                    {
                        return false;
                    }
                }

                return Lanes.Count > 0;
            }
        }

        public void Enqueue(WorkItem work) => Items.Enqueue(work, (-(int)work.Item.Priority, work.Order));

        /// <summary>How many items to hold ready: two rounds of every lane's concurrency.</summary>
        public int Target => Math.Clamp(2 * Lanes.Sum(l => l.Concurrency.Limit), 4, 2000);
    }
}
