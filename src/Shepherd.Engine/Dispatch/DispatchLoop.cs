using System.Threading.Channels;
using Microsoft.Extensions.Logging;
using Shepherd.Engine.Model;
using Shepherd.Engine.Pricing;
using Shepherd.Engine.Storage;

namespace Shepherd.Engine.Dispatch;

/// <summary>What a run of the dispatch loop is given, and all it is given.</summary>
/// <param name="Store">Where items are claimed from and batches looked up (outcomes go to <c>outcomes</c>, which the dispatcher commits).</param>
/// <param name="Upstreams">Every upstream, each with its breaker; lanes are made from them per model.</param>
/// <param name="Options">The dispatcher's validated options.</param>
/// <param name="Time">The clock: every wait and every decision's "now".</param>
/// <param name="Estimator">Counts prompt tokens for lanes that count tokens and for budgets.</param>
/// <param name="Prices">Prices answers, and the most a request may cost against a budget.</param>
/// <param name="Policy">Decides what each answer does to its item.</param>
/// <param name="Signals">What the loop and the dispatcher tell each other across threads.</param>
/// <param name="Waiters">Those who wait for batches to end.</param>
/// <param name="Counters">Live counters for progress displays.</param>
/// <param name="Telemetry">Where metrics go, if anywhere.</param>
/// <param name="Logger">The dispatcher's logger.</param>
/// <param name="Holds">What the loop and the native runner hold against budgets, told to each other.</param>
/// <param name="Cache">Answers kept across runs and batches: a request whose answer it has is answered from it, not sent; none when off.</param>
internal sealed record DispatchContext(
    IBatchStore Store,
    IReadOnlyList<UpstreamEndpoint> Upstreams,
    DispatchOptions Options,
    TimeProvider Time,
    TokenEstimator Estimator,
    PriceTable Prices,
    OutcomePolicy Policy,
    DispatchSignals Signals,
    BatchWaiters Waiters,
    DispatchCounters Counters,
    DispatchTelemetry? Telemetry,
    ILogger Logger,
    BudgetHolds Holds,
    Storage.AnswerCache? Cache);

/// <summary>
/// One run of the dispatcher. Everything here is touched by the loop alone: lanes, queues and
/// counts need no locks, and every decision about an item is taken in one place. It is handed
/// what it needs in a <see cref="DispatchContext"/>; what it shares with the dispatcher across
/// threads goes through <see cref="DispatchSignals"/>.
/// </summary>
internal sealed partial class DispatchLoop(DispatchContext context, string? onlyBatchId, ChannelWriter<ItemOutcome> outcomes)
{
    private readonly IBatchStore _store = context.Store;
    private readonly BudgetHolds _holds = context.Holds;
    private readonly Storage.AnswerCache? _cache = context.Cache;
    private readonly IReadOnlyList<UpstreamEndpoint> _upstreams = context.Upstreams;
    private readonly DispatchOptions _options = context.Options;
    private readonly TimeProvider _time = context.Time;
    private readonly TokenEstimator _estimator = context.Estimator;
    private readonly PriceTable _prices = context.Prices;
    private readonly OutcomePolicy _policy = context.Policy;
    private readonly DispatchSignals _signals = context.Signals;
    private readonly BatchWaiters _waiters = context.Waiters;
    private readonly DispatchCounters _counters = context.Counters;
    private readonly DispatchTelemetry? _telemetry = context.Telemetry;
    private readonly ILogger _logger = context.Logger;

    // The loop's own state, touched by nothing else.
    private readonly Dictionary<string, ModelQueue> _queues = new(StringComparer.Ordinal);
    private readonly Dictionary<(string Upstream, string Model), Lane> _lanes = [];
    private readonly Dictionary<string, BatchBudget> _budgets = new(StringComparer.Ordinal);
    private HashSet<string> _active = new(StringComparer.Ordinal);
    private DateTimeOffset _nextRefresh = DateTimeOffset.MinValue;
    private long _order;
    private int _inFlight;
    private int _parkings;
    private StoreException? _claimFailure;
    private DateTimeOffset? _blockedSince;

    /// <summary>The most outcomes that may wait for the store before sending pauses.</summary>
    private long UncommittedCap => Math.Max(16, 2L * _lanes.Values.Sum(lane => lane.Concurrency.Limit));

    private DateTimeOffset Now => _time.GetUtcNow();

    /// <summary>The lane that made the run give up (a refused key, an outage past its limit), once it has.</summary>
    public LaneState? StoppedBy { get; private set; }

    public async Task RunAsync(CancellationToken cancellationToken)
    {
        try
        {
            while (!cancellationToken.IsCancellationRequested && StoppedBy is null)
            {
                if (_signals.TakeBatchesChanged() || Now >= _nextRefresh)
                {
                    await RefreshAsync(cancellationToken);
                }

                while (_signals.Events.TryRead(out var next))
                {
                    Handle(next);
                }

                if (_claimFailure is not null)
                {
                    throw _claimFailure;
                }

                var wait = Pump(cancellationToken);
                StoppedBy = Stopping(Now);
                if (StoppedBy is null)
                {
                    await WaitAsync(wait, cancellationToken);
                }
            }
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
        }
        finally
        {
            await DrainAsync();
        }
    }

    /// <summary>Waits for every request and claim to report back, then queues again what was never sent.</summary>
    private async Task DrainAsync()
    {
        while (_inFlight > 0 || _signals.ClaimsInFlight > 0)
        {
            Handle(await _signals.Events.ReadAsync(CancellationToken.None));
        }

        foreach (var budget in _budgets.Values)
        {
            Unpark(budget, all: true);
        }

        foreach (var queue in _queues.Values)
        {
            while (queue.Items.TryDequeue(out var work, out _))
            {
                End(work, OutcomeKind.Released, new AttemptResult());
            }
        }
    }

    /// <summary>
    /// Ends an item that is not sent: a batch item's outcome goes to the store; a realtime call
    /// is answered with Shepherd's own error (released: the server stops; failed: the reason).
    /// </summary>
    private void End(WorkItem work, OutcomeKind kind, AttemptResult result)
    {
        if (work.Call is not { } call)
        {
            Emit(new ItemOutcome(work.Item, kind, result));
            return;
        }

        call.Reply(new RealtimeAnswer
        {
            Attempts = call.Attempts,
            Error = kind == OutcomeKind.Released
                ? new RealtimeError(503, "server_stopping", "Shepherd is stopping and sent nothing for this call; call again.", TimeSpan.FromSeconds(1))
                : new RealtimeError(result.ErrorCode == "model_not_served" ? 404 : 502, result.ErrorCode ?? "upstream_error", result.ErrorMessage ?? "The call could not be sent."),
        });
    }

    /// <summary>Keeps in <paramref name="queue"/> only the items <paramref name="keep"/> says, in their order.</summary>
    private static void KeepOnly(ModelQueue queue, Func<WorkItem, bool> keep)
    {
        var kept = queue.Items.UnorderedItems.Select(entry => entry.Element).Where(keep).ToList();
        queue.Items.Clear();
        kept.ForEach(queue.Enqueue);
    }

    private void Handle(DispatchEvent next)
    {
        switch (next)
        {
            case ClaimedEvent claimed:
                _signals.ClaimEnded();
                claimed.Queue.Claiming = false;
                claimed.Queue.NextDue = claimed.NextDue;
                foreach (var item in claimed.Items)
                {
                    var (contract, maxReasks) = claimed.Contracts.GetValueOrDefault(item.ItemId);
                    claimed.Queue.Enqueue(new WorkItem(item, item.Url, ++_order) { CacheKey = claimed.Keys.GetValueOrDefault(item.ItemId), Contract = contract, MaxReasks = maxReasks });
                }

                foreach (var (item, answer) in claimed.Hits)
                {
                    var result = CacheKeys.Answer(answer, item, _prices);
                    _telemetry?.AnsweredFromCache(result);
                    Emit(new ItemOutcome(item, OutcomeKind.Succeeded, result));
                }

                break;
            case CallEvent call:
                Enqueue(call.Call);
                break;
            case DropLeasesEvent:
                foreach (var queue in _queues.Values)
                {
                    // Realtime calls are no one else's: they stay.
                    KeepOnly(queue, work => work.Call is not null);
                    queue.Parked = 0;
                }

                foreach (var budget in _budgets.Values)
                {
                    budget.Waiting.Clear();
                }

                break;
            case RetriesStoredEvent retries:
                foreach (var (model, due) in retries.Due)
                {
                    if (_queues.TryGetValue(model, out var queue) && queue.NextDue > due)
                    {
                        queue.NextDue = due;
                    }
                }

                break;
            case AnsweredEvent answered:
                _inFlight--;
                _queues[answered.Lane.Model].InFlight--;
                Answered(answered);
                break;
        }
    }

    private void Emit(ItemOutcome outcome)
    {
        _signals.Emitted();
        outcomes.TryWrite(outcome);
    }

    private async Task WaitAsync(TimeSpan wait, CancellationToken cancellationToken)
    {
        if (wait <= TimeSpan.Zero || _signals.Events.TryPeek(out _))
        {
            return;
        }

        // Woken by the timer, by an event, or by a stop; whichever comes first unparks the loop
        // at once, before the loop itself resumes on the thread pool (never inline in whoever
        // fired the timer: a test's fake clock, for one).
        var woken = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var ticket = ++_parkings;
        void Wake()
        {
            // Only this wait's own wake unparks: a late one from an earlier wait must not.
            _signals.Unpark(ticket);
            woken.TrySetResult();
        }

        using var timer = _time.CreateTimer(_ => Wake(), null, wait, Timeout.InfiniteTimeSpan);
        using var stop = cancellationToken.Register(Wake);
        var reading = _signals.Events.WaitToReadAsync(cancellationToken);
        if (reading.IsCompleted)
        {
            Wake();
        }
        else
        {
            _ = reading.AsTask().ContinueWith(_ => Wake(), CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
        }

        // Parked only once every way to wake is in place, so time cannot move before the timer is
        // set; and not at all if a wake already came.
        _signals.Park(ticket);
        if (woken.Task.IsCompleted)
        {
            _signals.Unpark(ticket);
        }

        await woken.Task;
    }
}
