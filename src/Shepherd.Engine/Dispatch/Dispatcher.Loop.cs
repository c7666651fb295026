using System.Globalization;
using System.Threading.Channels;
using Shepherd.Engine.Model;
using Shepherd.Engine.Pricing;
using Shepherd.Engine.Storage;
using Shepherd.Engine.Upstreams;

namespace Shepherd.Engine.Dispatch;

public sealed partial class Dispatcher
{
    /// <summary>
    /// One run of the dispatcher. Everything here is touched by the loop alone: lanes, queues and
    /// counts need no locks, and every decision about an item is taken in one place.
    /// </summary>
    private sealed class DispatchLoop(Dispatcher owner, string? onlyBatchId, ChannelWriter<ItemOutcome> outcomes)
    {
        private readonly Dictionary<string, ModelQueue> _queues = new(StringComparer.Ordinal);
        private readonly Dictionary<(string Upstream, string Model), Lane> _lanes = [];
        private readonly Dictionary<string, Budget> _budgets = new(StringComparer.Ordinal);
        private HashSet<string> _active = new(StringComparer.Ordinal);
        private DateTimeOffset _nextRefresh = DateTimeOffset.MinValue;
        private long _order;
        private int _inFlight;
        private int _parkings;
        private StoreException? _claimFailure;
        private DateTimeOffset? _blockedSince;

        private DispatchOptions Options => owner._options;

        /// <summary>The most outcomes that may wait for the store before sending pauses.</summary>
        private long UncommittedCap => Math.Max(16, 2L * _lanes.Values.Sum(lane => lane.Concurrency.Limit));

        private DateTimeOffset Now => owner._time.GetUtcNow();

        /// <summary>The lane that made the run give up (a refused key, an outage past its limit), once it has.</summary>
        public LaneState? StoppedBy { get; private set; }

        public async Task RunAsync(CancellationToken cancellationToken)
        {
            try
            {
                while (!cancellationToken.IsCancellationRequested && StoppedBy is null)
                {
                    if (Interlocked.Exchange(ref owner._batchesChanged, 0) == 1 || Now >= _nextRefresh)
                    {
                        await RefreshAsync(cancellationToken);
                    }

                    while (owner._events.Reader.TryRead(out var next))
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
            while (_inFlight > 0 || Volatile.Read(ref owner._claimsInFlight) > 0)
            {
                Handle(await owner._events.Reader.ReadAsync(CancellationToken.None));
            }

            foreach (var budget in _budgets.Values)
            {
                Unpark(budget, all: true);
            }

            foreach (var queue in _queues.Values)
            {
                while (queue.Items.TryDequeue(out var work, out _))
                {
                    Emit(new ItemOutcome(work.Item, OutcomeKind.Released, new AttemptResult()));
                }
            }
        }

        private async Task RefreshAsync(CancellationToken cancellationToken)
        {
            var now = Now;
            _nextRefresh = now + Options.IdlePollInterval;
            var batches = await owner._store.ListActiveBatchesAsync(cancellationToken);
            Interlocked.Exchange(ref owner._queueDepth, batches.Sum(b => Math.Max(0, b.Total - b.Succeeded - b.Failed - b.Cancelled - b.Expired)));
            var expired = batches.Where(b => b.ExpiresAt <= now && b.ExpiredAt is null).Select(b => b.Id).ToHashSet(StringComparer.Ordinal);
            foreach (var batchId in expired)
            {
                await owner._store.ExpireBatchAsync(batchId, now, cancellationToken);
            }

            // An expiring batch waits only for its requests in flight; nothing more of it is sent.
            _active = [.. batches
                .Where(b => (onlyBatchId is null || b.Id == onlyBatchId) && b.ExpiredAt is null && !expired.Contains(b.Id))
                .Select(b => b.Id)];
            foreach (var batch in batches.Where(b => b.BudgetNanos is not null && _active.Contains(b.Id)))
            {
                // The store's figure only starts the count: answers not yet committed are already in the loop's.
                _budgets.TryAdd(batch.Id, new Budget(batch.BudgetNanos!.Value, batch.CostNanos));
            }

            foreach (var gone in _budgets.Keys.Where(id => !_active.Contains(id)).ToList())
            {
                // What waited for the budget goes back to its queue, which ends it with its batch.
                Unpark(_budgets[gone], all: true);
                _budgets.Remove(gone);
            }
            foreach (var model in await owner._store.ListActiveModelsAsync(onlyBatchId, cancellationToken))
            {
                if (!_queues.ContainsKey(model))
                {
                    _queues[model] = new ModelQueue(model, LanesFor(model, now));
                }
            }

            foreach (var queue in _queues.Values)
            {
                // Something changed, or a second passed: look for due items again.
                queue.NextDue = null;
                await PurgeAsync(queue, cancellationToken);
            }

            ShareLanes(now);
            await EndWaitersAsync(cancellationToken);
        }

        /// <summary>Says which lanes this node has work for, and keeps each lane to its share among the nodes that send on it.</summary>
        private void ShareLanes(DateTimeOffset now)
        {
            var sending = _queues.Values
                .Where(queue => queue.Items.Count + queue.InFlight > 0)
                .SelectMany(queue => queue.Lanes)
                .ToHashSet();
            Volatile.Write(ref owner._sendingLanes, [.. sending.Select(lane => lane.Key)]);
            var (view, settle) = owner.Cluster();
            foreach (var lane in _lanes.Values)
            {
                lane.SendingSince = sending.Contains(lane) ? lane.SendingSince ?? now : null;
                var settled = lane.SendingSince is { } since && now - since >= settle;
                lane.SetShare(settled ? 1.0 / (1 + view.OthersOnLanes.GetValueOrDefault(lane.Key)) : 1.0 / Math.Max(1, view.Nodes));
            }

            PublishLanes(now);
        }

        /// <summary>Makes the lanes as they are now what <see cref="Dispatcher.Lanes"/> shows.</summary>
        private void PublishLanes(DateTimeOffset now) => Volatile.Write(ref owner._laneStates, [.. _lanes.Values.Select(lane => StateOf(lane, now))]);

        private static LaneState StateOf(Lane lane, DateTimeOffset now) => new(
            lane.Upstream.Name, lane.Model, lane.RequestsPerMinute, lane.TokensPerMinute, lane.Concurrency.Limit, lane.Concurrency.InFlight,
            lane.PausedUntil > now ? lane.PausedUntil : null, lane.Share)
        {
            Halt = lane.Halt,
        };

        /// <summary>
        /// The lane to give up for, when the options say to and nothing can be sent: every queue
        /// with requests waiting has only lanes that are stopped. A refused key stops the run at
        /// once (only the user can fix it); an outage once it has lasted <see cref="DispatchOptions.MaxOutage"/>.
        /// </summary>
        private LaneState? Stopping(DateTimeOffset now)
        {
            if (!Options.StopWhenKeyRefused && Options.MaxOutage is null)
            {
                return null;
            }

            Lane? refused = null, down = null;
            foreach (var queue in _queues.Values)
            {
                if (queue.Items.Count + queue.Parked == 0)
                {
                    continue;
                }

                for (var i = 0; i < queue.Lanes.Count; i++)
                {
                    var lane = queue.Lanes[i];
                    if (!lane.IsHalted)
                    {
                        _blockedSince = null;
                        return null;
                    }

                    if (lane.RefusedSince is not null)
                    {
                        refused ??= lane;
                    }
                    else
                    {
                        down ??= lane;
                    }
                }
            }

            if (refused is null && down is null)
            {
                return null;
            }

            _blockedSince ??= now;
            if (Options.StopWhenKeyRefused && refused is not null)
            {
                return StateOf(refused, now);
            }

            return Options.MaxOutage is { } most && down is not null && now - _blockedSince >= most ? StateOf(down, now) : null;
        }

        private List<Lane> LanesFor(string model, DateTimeOffset now)
        {
            var lanes = new List<Lane>();
            foreach (var upstream in owner._upstreams.Where(u => u.Client.Options.Serves(model)))
            {
                if (!_lanes.TryGetValue((upstream.Name, model), out var lane))
                {
                    lane = new Lane(upstream, model, Options, now);
                    _lanes[(upstream.Name, model)] = lane;
                }

                lanes.Add(lane);
            }

            return lanes;
        }

        /// <summary>Ends the queued items of batches that stopped being active: cancelled, expired, or taken back.</summary>
        private async Task PurgeAsync(ModelQueue queue, CancellationToken cancellationToken)
        {
            if (queue.Items.UnorderedItems.All(entry => _active.Contains(entry.Element.Item.BatchId)))
            {
                return;
            }

            var keep = new List<WorkItem>();
            var ended = new Dictionary<string, OutcomeKind>(StringComparer.Ordinal);
            while (queue.Items.TryDequeue(out var work, out _))
            {
                var batchId = work.Item.BatchId;
                if (_active.Contains(batchId))
                {
                    keep.Add(work);
                    continue;
                }

                if (!ended.TryGetValue(batchId, out var kind))
                {
                    kind = OutcomePolicy.Unsent(await owner._store.GetBatchAsync(batchId, cancellationToken));
                    ended[batchId] = kind;
                }

                Emit(new ItemOutcome(work.Item, kind, new AttemptResult()));
            }

            keep.ForEach(queue.Enqueue);
        }

        /// <summary>Tells waiters of batches that ended without a commit of this loop (a cancel with nothing in flight).</summary>
        private async Task EndWaitersAsync(CancellationToken cancellationToken)
        {
            foreach (var batchId in owner._waiters.Keys.Where(id => !_active.Contains(id)).ToList())
            {
                if (await owner._store.GetBatchAsync(batchId, cancellationToken) is { HasEnded: true }
                    && owner._waiters.TryRemove(batchId, out var waiter))
                {
                    waiter.TrySetResult();
                }
            }
        }

        /// <summary>Claims what queues lack and admits what lanes allow; returns how long until there may be more to do.</summary>
        private TimeSpan Pump(CancellationToken cancellationToken)
        {
            var now = Now;
            var wait = _nextRefresh - now;
            foreach (var queue in _queues.Values)
            {
                var held = queue.Items.Count + queue.Parked;
                var target = queue.Target;
                if (queue.IsBlocked)
                {
                    // Nothing goes but probes: one request is held for them, the rest go back to the store.
                    target = 1;
                    ReleaseBeyond(queue, target);
                    held = queue.Items.Count + queue.Parked;
                }

                if (!queue.Claiming && held < Math.Max(1, target / 2) && (queue.NextDue is null || queue.NextDue <= now))
                {
                    var want = target - held - queue.InFlight;
                    if (want > 0 && _active.Count > 0)
                    {
                        StartClaim(queue, want, now);
                    }
                }
                else if (queue.Items.Count == 0 && queue.NextDue is { } due && due - now < wait)
                {
                    wait = due - now;
                }

                if (Admit(queue, now, cancellationToken) is { } laneWait && laneWait < wait)
                {
                    wait = laneWait;
                }
            }

            return wait;
        }

        /// <summary>Hands back to the store the queued items of <paramref name="queue"/> beyond <paramref name="keep"/>, the last in order first.</summary>
        private void ReleaseBeyond(ModelQueue queue, int keep)
        {
            if (queue.Items.Count <= keep)
            {
                return;
            }

            var kept = new List<WorkItem>(keep);
            while (kept.Count < keep && queue.Items.TryDequeue(out var work, out _))
            {
                kept.Add(work);
            }

            while (queue.Items.TryDequeue(out var work, out _))
            {
                Emit(new ItemOutcome(work.Item, OutcomeKind.Released, new AttemptResult()));
            }

            kept.ForEach(queue.Enqueue);
        }

        /// <summary>Sends queued items while some lane of the model has room; returns the wait for the next, if a lane said.</summary>
        private TimeSpan? Admit(ModelQueue queue, DateTimeOffset now, CancellationToken cancellationToken)
        {
            while (queue.Items.TryPeek(out var work, out _))
            {
                // Answers not yet recorded are sent again after a crash: while the store lags, as many
                // as two rounds of the lanes' concurrency wait for it, and nothing more is sent until
                // it catches up (each commit wakes the loop).
                if (Interlocked.Read(ref owner._uncommitted) >= UncommittedCap)
                {
                    return null;
                }

                if (queue.Lanes.Count == 0)
                {
                    queue.Items.Dequeue();
                    Emit(new ItemOutcome(work.Item, OutcomeKind.Failed, new AttemptResult
                    {
                        ErrorCode = "model_not_served",
                        ErrorMessage = $"no configured upstream serves the model {queue.Model}",
                    }));
                    continue;
                }

                _budgets.TryGetValue(work.Item.BatchId, out var budget);
                if (work.PromptTokens is null && (budget is not null || queue.Lanes.Any(l => l.CountsTokens)))
                {
                    (work.PromptTokens, work.MaxOutputTokens) = owner._estimator.Estimate(queue.Model, work.Item.Body);
                }

                var most = budget is null ? 0 : owner._prices.Price(queue.Model, work.PromptTokens ?? 0, work.MaxOutputTokens ?? Options.DefaultOutputTokens).Nanos;
                if (budget is not null && budget.Spent + budget.Reserved + most > budget.Limit)
                {
                    queue.Items.Dequeue();
                    if (budget.Spent + most <= budget.Limit)
                    {
                        // It fits once what others hold has settled: it waits for their answers.
                        work.MostNanos = most;
                        budget.Waiting.Enqueue(work);
                        queue.Parked++;
                        continue;
                    }

                    Emit(new ItemOutcome(work.Item, OutcomeKind.Failed, new AttemptResult
                    {
                        ErrorCode = FailureCodes.BudgetExceeded,
                        ErrorMessage = string.Create(CultureInfo.InvariantCulture,
                            $"not sent: the budget of the batch is {Cost.Describe(budget.Limit)} and {Cost.Describe(budget.Spent)} of it is spent, so {Cost.Describe(budget.Limit - budget.Spent)} is left; this request may cost up to {Cost.Describe(most)}"),
                    }));
                    continue;
                }

                var lane = Pick(queue, work, now, out var laneWait);
                if (lane is null)
                {
                    if (laneWait is not null)
                    {
                        owner.Telemetry?.WaitedForRate(queue.Model);
                    }

                    return laneWait;
                }

                queue.Items.Dequeue();
                if (budget is not null)
                {
                    work.ReservedNanos = most;
                    budget.Reserved += most;
                }

                var reservation = lane.Admit(work.PromptTokens ?? 0, work.MaxOutputTokens, now);
                queue.InFlight++;
                _inFlight++;
                owner.Counters.Started();
                _ = SendAsync(work, lane, reservation, cancellationToken);
            }

            return null;
        }

        /// <summary>Smooth weighted round robin among the lanes that may take the item now.</summary>
        private static Lane? Pick(ModelQueue queue, WorkItem work, DateTimeOffset now, out TimeSpan? wait)
        {
            Lane? best = null;
            var total = 0;
            wait = null;
            foreach (var lane in queue.Lanes)
            {
                var laneWait = lane.WaitBeforeAdmitting(work.PromptTokens ?? 0, work.MaxOutputTokens, now);
                if (laneWait == TimeSpan.Zero)
                {
                    lane.CurrentWeight += lane.Upstream.Weight;
                    total += lane.Upstream.Weight;
                    if (best is null || lane.CurrentWeight > best.CurrentWeight)
                    {
                        best = lane;
                    }
                }
                else if (laneWait is { } time && (wait is null || time < wait))
                {
                    wait = time;
                }
            }

            if (best is not null)
            {
                best.CurrentWeight -= total;
            }

            return best;
        }

        private async Task SendAsync(WorkItem work, Lane lane, SentRequest reservation, CancellationToken cancellationToken)
        {
            // Off the loop at once: building and sending a request, and reading its answer, run in
            // parallel on the pool; the loop only admits and decides.
            await Task.Yield();
            UpstreamResponse? response;
            using var span = DispatchTelemetry.Source.StartActivity("upstream request", System.Diagnostics.ActivityKind.Client);
            span?.SetTag("shepherd.batch_id", work.Item.BatchId);
            span?.SetTag("shepherd.custom_id", work.Item.CustomId);
            span?.SetTag("shepherd.attempt", work.Item.Attempt);
            span?.SetTag("shepherd.upstream", lane.Upstream.Name);
            span?.SetTag("gen_ai.request.model", work.Item.Model);
            try
            {
                response = await lane.Upstream.Client.SendAsync(work.Url, work.Item.Body, cancellationToken);
            }
            catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
            {
                response = null;
            }
#pragma warning disable CA1031 // A fault in one send must not strand its item: it becomes a transient failure, retried.
            catch (Exception ex)
#pragma warning restore CA1031
            {
                response = new UpstreamResponse { FailureCode = FailureCodes.ConnectionError, FailureMessage = $"unexpected {ex.GetType().Name}: {ex.Message}" };
            }

            var classified = response is null ? default : AttemptClassifier.Classify(response, lane.Upstream.Kind);
            span?.SetTag("http.response.status_code", response?.StatusCode);
            span?.SetTag("shepherd.failure", response?.FailureCode);
            owner._events.Writer.TryWrite(new AnsweredEvent(work, lane, reservation, response, classified));
        }

        private void StartClaim(ModelQueue queue, int max, DateTimeOffset now)
        {
            queue.Claiming = true;
            Interlocked.Increment(ref owner._claimsInFlight);
            _ = ClaimAsync(queue, max, now);
        }

        private async Task ClaimAsync(ModelQueue queue, int max, DateTimeOffset now)
        {
            try
            {
                // Not cancellable: a claim that was committed must reach the loop, which releases it on stop.
                var items = await owner._store.ClaimAsync(queue.Model, onlyBatchId, max, now, now + Options.LeaseDuration, CancellationToken.None);
                var nextDue = items.Count < max
                    ? await owner._store.NextDueAsync(queue.Model, onlyBatchId, CancellationToken.None) ?? now + Options.IdlePollInterval
                    : (DateTimeOffset?)null;
                owner._events.Writer.TryWrite(new ClaimedEvent(queue, items, nextDue));
            }
            catch (StoreException ex)
            {
                _claimFailure = ex;
                owner._events.Writer.TryWrite(new ClaimedEvent(queue, [], now + Options.IdlePollInterval));
            }
        }

        private void Handle(DispatchEvent next)
        {
            switch (next)
            {
                case ClaimedEvent claimed:
                    Interlocked.Decrement(ref owner._claimsInFlight);
                    claimed.Queue.Claiming = false;
                    claimed.Queue.NextDue = claimed.NextDue;
                    foreach (var item in claimed.Items)
                    {
                        claimed.Queue.Enqueue(new WorkItem(item, item.Url, ++_order));
                    }

                    break;
                case DropLeasesEvent:
                    foreach (var queue in _queues.Values)
                    {
                        queue.Items.Clear();
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

        private void Answered(AnsweredEvent answered)
        {
            var (work, lane, reservation, response, classified) = answered;
            var now = Now;
            var latency = now - reservation.At;
            var priced = Priced(work.Item.Model, classified.Result) is { } answer ? answer with { LatencyMs = (int)Math.Min(int.MaxValue, latency.TotalMilliseconds) } : null;
            Settle(work, priced);
            if (response is null)
            {
                // Abandoned on stop: the item stays leased and runs again after a restart.
                lane.Abandon();
                owner.Counters.Ended(null);
                owner.Telemetry?.Answered(lane.Upstream.Name, lane.Model, "abandoned", null, null, latency);
                return;
            }

            owner.Counters.Ended(response.StatusCode);

            var (verdict, _, retryAfter) = classified;
            var result = priced!;
            var change = lane.Complete(reservation, response, verdict, result.OutputTokens, now);
            if (change != default)
            {
                owner.Report(lane, change, now);
                PublishLanes(now);
            }

            var item = work.Item;
            owner.Telemetry?.Answered(lane.Upstream.Name, lane.Model, verdict switch
            {
                Verdict.Success => "succeeded",
                Verdict.Transient => "transient_failure",
                Verdict.Refused => "key_refused",
                _ => "failed",
            }, response, result, latency);
            var decision = owner._policy.Decide(new Answer(verdict, item.Attempt)
            {
                RateLimited = response.StatusCode == 429,
                UpstreamDown = lane.Upstream.IsDown,
                InFailureRun = lane.InFailureRun,
                RetryAfter = retryAfter,
            }, now);
            if (decision.Kind is not { } kind)
            {
                Requeue(work, lane, result);
                return;
            }

            switch (kind)
            {
                case OutcomeKind.Retry:
                    owner.Counters.Retried();
                    owner.Telemetry?.Retried(lane.Upstream.Name, lane.Model, "retry");
                    owner.LogRetry(item.BatchId, item.CustomId, item.Attempt, lane.Upstream.Name, result, decision.Delay.TotalMilliseconds);
                    break;
                case OutcomeKind.Failed:
                    owner.LogFailed(item.BatchId, item.CustomId, item.Attempt, lane.Upstream.Name, result);
                    break;
            }

            Emit(new ItemOutcome(item, kind, result, decision.NextAttemptAt));
        }

        /// <summary>Frees what the request held against its batch's budget, and counts what its answer cost.</summary>
        private void Settle(WorkItem work, AttemptResult? result)
        {
            if (!_budgets.TryGetValue(work.Item.BatchId, out var budget))
            {
                return;
            }

            budget.Reserved -= work.ReservedNanos;
            work.ReservedNanos = 0;
            budget.Spent += result?.CostNanos ?? 0;
            Unpark(budget, all: budget.Reserved == 0);
        }

        /// <summary>
        /// Queues again what waits for the budget and now fits beside what is still held, in the
        /// order it came; with <paramref name="all"/>, everything (the queue then sends it, or ends
        /// it when the budget can no longer pay it).
        /// </summary>
        private void Unpark(Budget budget, bool all)
        {
            // What goes back is counted as held already: the queue reserves it when it sends it.
            var going = 0L;
            while (budget.Waiting.TryPeek(out var work) && (all || budget.Spent + budget.Reserved + going + work.MostNanos <= budget.Limit))
            {
                budget.Waiting.Dequeue();
                going += work.MostNanos;
                var queue = _queues[work.Item.Model];
                queue.Parked--;
                queue.Enqueue(work);
            }
        }

        /// <summary>An answer with tokens priced, once: the cost is recorded with it and counted against its batch's budget.</summary>
        private AttemptResult? Priced(string model, AttemptResult? result)
        {
            if (result is null || result.InputTokens + result.OutputTokens == 0)
            {
                return result;
            }

            var cost = owner._prices.Price(model, result.InputTokens, result.OutputTokens, result.CachedTokens);
            return result with { CostNanos = cost.Nanos, Priced = cost.Priced };
        }

        private void Emit(ItemOutcome outcome)
        {
            Interlocked.Increment(ref owner._uncommitted);
            outcomes.TryWrite(outcome);
        }

        private void Requeue(WorkItem work, Lane lane, AttemptResult reason)
        {
            owner.Counters.Requeue();
            owner.Telemetry?.Retried(lane.Upstream.Name, lane.Model, "requeued");
            owner.LogRequeued(work.Item.BatchId, work.Item.CustomId, lane.Upstream.Name, reason);
            _queues[lane.Model].Enqueue(work);
        }

        private async Task WaitAsync(TimeSpan wait, CancellationToken cancellationToken)
        {
            if (wait <= TimeSpan.Zero || owner._events.Reader.TryPeek(out _))
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
                Interlocked.CompareExchange(ref owner._parked, 0, ticket);
                woken.TrySetResult();
            }

            using var timer = owner._time.CreateTimer(_ => Wake(), null, wait, Timeout.InfiniteTimeSpan);
            using var stop = cancellationToken.Register(Wake);
            var reading = owner._events.Reader.WaitToReadAsync(cancellationToken);
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
            Volatile.Write(ref owner._parked, ticket);
            if (woken.Task.IsCompleted)
            {
                Interlocked.CompareExchange(ref owner._parked, 0, ticket);
            }

            await woken.Task;
        }
    }
}
