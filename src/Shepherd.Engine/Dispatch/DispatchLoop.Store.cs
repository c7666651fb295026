using System.Collections.Concurrent;
using Shepherd.Engine.Formats;
using Shepherd.Engine.Model;
using Shepherd.Engine.Storage;
using Shepherd.Engine.Upstreams;

namespace Shepherd.Engine.Dispatch;

/// <content>
/// What the loop learns from the store and tells the node: which batches are active (ending the
/// queued items of those that stopped), which models have work and the lanes that serve them,
/// each lane's share among the nodes, when to give up, and the claims that fill the queues.
/// </content>
internal sealed partial class DispatchLoop
{
    /// <summary>
    /// What each active batch asks: how it uses the answer cache, its owner (whose keys it uses),
    /// and what it asks of its answers; replaced whole at each refresh, read by the claims.
    /// </summary>
    private ConcurrentDictionary<string, BatchRules> _rules = new(StringComparer.Ordinal);

    private async Task RefreshAsync(CancellationToken cancellationToken)
    {
        var now = Now;
        _nextRefresh = now + _options.IdlePollInterval;
        var batches = await _store.ListActiveBatchesAsync(cancellationToken);
        _signals.QueueDepth = batches.Sum(b => Math.Max(0, b.Total - b.Succeeded - b.Failed - b.Cancelled - b.Expired));
        var expired = batches.Where(b => b.ExpiresAt <= now && b.ExpiredAt is null).Select(b => b.Id).ToHashSet(StringComparer.Ordinal);
        foreach (var batchId in expired)
        {
            await _store.ExpireBatchAsync(batchId, now, cancellationToken);
        }

        _rules = new(batches.Select(b => KeyValuePair.Create(b.Id, BatchRules.Of(b))), StringComparer.Ordinal);

        // An expiring batch waits only for its requests in flight; nothing more of it is sent.
        _active = [.. batches
            .Where(b => (onlyBatchId is null || b.Id == onlyBatchId) && b.ExpiredAt is null && !expired.Contains(b.Id))
            .Select(b => b.Id)];
        foreach (var batch in batches.Where(b => b.BudgetNanos is not null && _active.Contains(b.Id)))
        {
            // The store's figure only starts the count: answers not yet committed are already in the loop's.
            _budgets.TryAdd(batch.Id, new BatchBudget(batch.Id, batch.BudgetNanos!.Value, batch.CostNanos, _holds));
        }

        foreach (var budget in _budgets.Values.Where(b => b.Waiting.Count > 0 && b.Reserved == 0))
        {
            // What waits only for the native runner's jobs to give their holds back is decided again at each
            // refresh: sent when it fits, waiting again when the jobs still hold what it needs, ended when it never can fit.
            Unpark(budget, all: true);
        }

        foreach (var gone in _budgets.Keys.Where(id => !_active.Contains(id)).ToList())
        {
            // What waited for the budget goes back to its queue, which ends it with its batch.
            Unpark(_budgets[gone], all: true);
            _budgets.Remove(gone);
        }
        foreach (var model in await _store.ListActiveModelsAsync(onlyBatchId, cancellationToken))
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

    /// <summary>Ends the queued items of batches that stopped being active: cancelled, expired, or taken back.</summary>
    private async Task PurgeAsync(ModelQueue queue, CancellationToken cancellationToken)
    {
        if (queue.Items.UnorderedItems.All(entry => entry.Element.Call is not null || _active.Contains(entry.Element.Item.BatchId)))
        {
            return;
        }

        var keep = new List<WorkItem>();
        var ended = new Dictionary<string, OutcomeKind>(StringComparer.Ordinal);
        while (queue.Items.TryDequeue(out var work, out _))
        {
            var batchId = work.Item.BatchId;
            if (work.Call is not null || _active.Contains(batchId))
            {
                keep.Add(work);
                continue;
            }

            if (!ended.TryGetValue(batchId, out var kind))
            {
                kind = OutcomePolicy.Unsent(await _store.GetBatchAsync(batchId, cancellationToken));
                ended[batchId] = kind;
            }

            Emit(new ItemOutcome(work.Item, kind, new AttemptResult()));
        }

        keep.ForEach(queue.Enqueue);
    }

    /// <summary>Tells waiters of batches that ended without a commit of this loop (a cancel with nothing in flight).</summary>
    private async Task EndWaitersAsync(CancellationToken cancellationToken)
    {
        foreach (var batchId in _waiters.BatchIds.Where(id => !_active.Contains(id)).ToList())
        {
            if (await _store.GetBatchAsync(batchId, cancellationToken) is { HasEnded: true })
            {
                _waiters.Release(batchId);
            }
        }
    }

    /// <summary>Says which lanes this node has work for, and keeps each lane to its share among the nodes that send on it.</summary>
    private void ShareLanes(DateTimeOffset now)
    {
        var sending = _queues.Values
            .Where(queue => queue.Items.Count + queue.InFlight > 0)
            .SelectMany(queue => queue.Lanes)
            .ToHashSet();
        _signals.SendingLanes = [.. sending.Select(lane => lane.Key)];
        var (view, settle) = _signals.Cluster;
        foreach (var lane in _lanes.Values)
        {
            lane.SendingSince = sending.Contains(lane) ? lane.SendingSince ?? now : null;
            var settled = lane.SendingSince is { } since && now - since >= settle;
            lane.SetShare(settled ? 1.0 / (1 + view.OthersOnLanes.GetValueOrDefault(lane.Key)) : 1.0 / Math.Max(1, view.Nodes));
        }

        PublishLanes(now);
    }

    /// <summary>Makes the lanes as they are now what <see cref="Dispatcher.Lanes"/> shows.</summary>
    private void PublishLanes(DateTimeOffset now) => _signals.Lanes = [.. _lanes.Values.Select(lane => StateOf(lane, now))];

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
        if (!_options.StopWhenKeyRefused && _options.MaxOutage is null)
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
        if (_options.StopWhenKeyRefused && refused is not null)
        {
            return StateOf(refused, now);
        }

        return _options.MaxOutage is { } most && down is not null && now - _blockedSince >= most ? StateOf(down, now) : null;
    }

    private List<Lane> LanesFor(string model, DateTimeOffset now)
    {
        var lanes = new List<Lane>();
        foreach (var upstream in _upstreams.Where(u => u.Client.Options.Serves(model)))
        {
            if (!_lanes.TryGetValue((upstream.Name, model), out var lane))
            {
                lane = new Lane(upstream, model, _options, now);
                _lanes[(upstream.Name, model)] = lane;
            }

            lanes.Add(lane);
        }

        return lanes;
    }

    private void StartClaim(ModelQueue queue, int max, DateTimeOffset now)
    {
        queue.Claiming = true;
        _signals.ClaimStarted();
        _ = ClaimAsync(queue, max, now);
    }

    private async Task ClaimAsync(ModelQueue queue, int max, DateTimeOffset now)
    {
        try
        {
            // Not cancellable: a claim that was committed must reach the loop, which releases it on stop.
            var items = await _store.ClaimAsync(queue.Model, onlyBatchId, max, now, now + _options.LeaseDuration, CancellationToken.None);
            var nextDue = items.Count < max
                ? await _store.NextDueAsync(queue.Model, onlyBatchId, CancellationToken.None) ?? now + _options.IdlePollInterval
                : (DateTimeOffset?)null;
            _signals.Tell(await LookUpAsync(await WithContractsAsync(new ClaimedEvent(queue, items, nextDue))));
        }
        catch (StoreException ex)
        {
            _claimFailure = ex;
            _signals.Tell(new ClaimedEvent(queue, [], now + _options.IdlePollInterval));
        }
    }

    /// <summary>
    /// Looks the claimed items up in the answer cache, by the key of what the provider would see
    /// (its kind, the endpoint, the body as sent) within the batch's tenant: those it answers are
    /// split off, to be recorded without being sent. Items of a batch that does not use the cache,
    /// or that asks for sampling in a batch that does not replay it, get no key: they are sent, and
    /// their answers not kept. A cache that cannot be read answers none.
    /// </summary>
    private async Task<ClaimedEvent> LookUpAsync(ClaimedEvent claimed)
    {
        if (_cache is not { } cache || claimed.Items.Count == 0)
        {
            return claimed;
        }

        var kind = claimed.Queue.Lanes.Count > 0 ? claimed.Queue.Lanes[0].Upstream.Kind : UpstreamKind.OpenAI;
        var keys = new Dictionary<long, string>();
        foreach (var item in claimed.Items)
        {
            var (use, owner, _) = await RulesOfAsync(item.BatchId);
            if (CacheKeys.For(use, owner, kind, item) is { } key)
            {
                keys[item.ItemId] = key;
            }
        }

        var found = await CacheKeys.FindAsync(cache, keys, CancellationToken.None);
        return claimed with
        {
            Items = [.. claimed.Items.Where(item => !found.ContainsKey(item.ItemId))],
            Hits = [.. claimed.Items.Where(item => found.ContainsKey(item.ItemId)).Select(item => (item, found[item.ItemId]))],
            Keys = keys,
        };
    }

    /// <summary>
    /// What each claimed item asks its answer to be (its own schema, or its batch's), worked out
    /// here in the claim rather than where its answer arrives, so the send reads no store.
    /// </summary>
    private async Task<ClaimedEvent> WithContractsAsync(ClaimedEvent claimed)
    {
        var contracts = new Dictionary<long, (OutputContract, int)>();
        foreach (var item in claimed.Items)
        {
            var rules = (await RulesOfAsync(item.BatchId)).Output;
            if (rules.ContractOf(item.Url, item.Body) is { } contract)
            {
                contracts[item.ItemId] = (contract, rules.MaxReasks);
            }
        }

        return contracts.Count == 0 ? claimed : claimed with { Contracts = contracts };
    }

    /// <summary>
    /// What a batch asks: learnt at each refresh, asked of the store for a batch claimed before one
    /// saw it. When the store cannot say, the batch asks nothing of its own this time (its requests'
    /// own schemas still hold): the claim must reach the loop, which holds its leases.
    /// </summary>
    private async ValueTask<BatchRules> RulesOfAsync(string batchId)
    {
        if (_rules.TryGetValue(batchId, out var known))
        {
            return known;
        }

        try
        {
            var batch = await _store.GetBatchAsync(batchId, CancellationToken.None);
            return _rules[batchId] = batch is null ? BatchRules.Gone : BatchRules.Of(batch);
        }
        catch (StoreException)
        {
            return BatchRules.Gone;
        }
    }

    /// <summary>What a batch asks of the dispatcher beyond its items.</summary>
    /// <param name="Use">How it uses the answer cache.</param>
    /// <param name="Owner">Its tenant, whose keys its cache entries are under.</param>
    /// <param name="Output">What it asks of its answers.</param>
    private sealed record BatchRules(CacheUse Use, string? Owner, OutputRules Output)
    {
        /// <summary>A batch that is no longer there: nothing kept, nothing checked beyond what its requests ask.</summary>
        public static BatchRules Gone { get; } = new(CacheUse.Off, null, OutputRules.Default);

        public static BatchRules Of(BatchRecord batch) => new(batch.Cache, batch.Owner, OutputRules.Of(batch));
    }
}
