using System.Threading.Channels;
using Microsoft.Extensions.Logging;
using Shepherd.Engine.Cluster;
using Shepherd.Engine.Dispatch;
using Shepherd.Engine.Formats;
using Shepherd.Engine.Model;
using Shepherd.Engine.Pricing;
using Shepherd.Engine.Storage;
using Shepherd.Engine.Upstreams;

namespace Shepherd.Engine.Native;

/// <summary>
/// Runs the batches of <see cref="BatchMode.Native"/>: their items are leased (for longer than
/// the provider's window), split into jobs within the provider's limits, handed to the
/// provider's own batch API, and the provider's batch id is recorded in the store before it is
/// polled, so a restart resumes polling instead of paying twice. When a job ends its results
/// are mapped back to the items by custom id: answers are priced at the batch discount, lines
/// that failed for a transient reason or are missing go into a next job (up to
/// <see cref="DispatchOptions.MaxAttempts"/>), permanent failures end the item with the
/// provider's error. A cancelled batch cancels its jobs at the provider; an expired one too.
/// </summary>
public sealed partial class NativeBatchRunner
{
    private readonly IBatchStore _store;
    private readonly IReadOnlyList<NativeProvider> _providers;
    private readonly NativeBatchOptions _options;
    private readonly OutcomePolicy _policy;
    private readonly TimeProvider _time;
    private readonly PriceTable _prices;
    private readonly ILogger _logger;
    private readonly Channel<bool> _wake = Channel.CreateBounded<bool>(new BoundedChannelOptions(1) { FullMode = BoundedChannelFullMode.DropWrite });
    private readonly Dictionary<long, Job> _jobs = [];
    private readonly Dictionary<long, Job> _jobOfItem = [];

    /// <summary>The answer cache's keys of the items claimed in this look, until the job each goes into takes its own.</summary>
    private readonly Dictionary<long, string> _claimKeys = [];

    /// <summary>What each item claimed in this cycle asks its answer to be, for the job it goes into; items of free text have none.</summary>
    private readonly Dictionary<long, OutputContract> _claimContracts = [];
    private readonly Dictionary<string, DateTimeOffset> _submitBackoff = new(StringComparer.Ordinal);
    private readonly ClusterNode? _node;
    private readonly IReadOnlyList<UpstreamOptions> _flex;
    private readonly Dictionary<string, (double Sum, long Count)> _tokens = new(StringComparer.Ordinal);
    private readonly TokenEstimator _estimator;
    private readonly int _defaultOutputTokens;
    private bool _loaded;

    /// <summary>Creates a runner over the upstreams that have a batch API; the options are copied.</summary>
    public NativeBatchRunner(
        IBatchStore store,
        IEnumerable<UpstreamClient> upstreams,
        HttpClient http,
        NativeBatchOptions options,
        DispatchOptions dispatch,
        TimeProvider timeProvider,
        PriceTable prices,
        TokenEstimator estimator,
        ILogger<NativeBatchRunner> logger,
        ClusterNode? node = null)
    {
        ArgumentNullException.ThrowIfNull(store);
        ArgumentNullException.ThrowIfNull(upstreams);
        ArgumentNullException.ThrowIfNull(http);
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(dispatch);
        ArgumentNullException.ThrowIfNull(timeProvider);
        ArgumentNullException.ThrowIfNull(prices);
        ArgumentNullException.ThrowIfNull(estimator);
        ArgumentNullException.ThrowIfNull(logger);
        _store = store;
        _estimator = estimator;
        _defaultOutputTokens = dispatch.DefaultOutputTokens;
        _options = options.Validated();
        _policy = OutcomePolicy.ForJobs(dispatch.MaxAttempts);
        _time = timeProvider;
        _prices = prices;
        _logger = logger;
        _node = node;
        _providers = [.. upstreams
            .Where(u => u.Options.BatchApi == true)
            .Select(u => u.Kind == UpstreamKind.Anthropic
                ? (NativeProvider)new AnthropicNativeProvider(http, u.Options, timeProvider, _options)
                : new OpenAINativeProvider(http, u.Options, timeProvider, _options))];
        _flex = [.. upstreams.Select(u => u.Options).Where(o => o.Flex)];
    }

    /// <summary>Raised after results ended batches (they are now ended, or finalizing). Handlers must be quick.</summary>
    public event Action? BatchesEnded;

    /// <summary>Tells the runner that batches changed (new, cancelled), so it need not wait for its next look.</summary>
    public void NotifyBatchesChanged() => _wake.Writer.TryWrite(true);

    /// <summary>Runs native batches until <paramref name="stoppingToken"/> is cancelled; jobs at providers stay recorded and are polled again on the next run.</summary>
    public async Task RunAsync(CancellationToken stoppingToken)
    {
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                if (_node?.IsLeader ?? true)
                {
                    await RunOnceAsync(stoppingToken);
                    if (StopOnRefusedKey && RefusedKey is not null)
                    {
                        return;
                    }
                }
                else
                {
                    // Another node leads: it runs the jobs. Should this node lead again, it reads them afresh.
                    Forget();
                }
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                return;
            }
            catch (StoreException)
            {
                throw;
            }
#pragma warning disable CA1031 // One failed look must not stop native batches: the next look tries again.
            catch (Exception ex)
#pragma warning restore CA1031
            {
                LogCycleFailed(ex);
            }

            try
            {
                using var delay = CancellationTokenSource.CreateLinkedTokenSource(stoppingToken);
                var woken = _wake.Reader.WaitToReadAsync(delay.Token).AsTask();
                var timer = Task.Delay(_options.PollInterval, _time, delay.Token);
                await Task.WhenAny(woken, timer);
                await delay.CancelAsync();
                _wake.Reader.TryRead(out _);
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                return;
            }
        }
    }

    /// <summary>One look: resumes recorded jobs, submits what is queued, cancels what was cancelled, and reads what ended.</summary>
    internal async Task RunOnceAsync(CancellationToken cancellationToken)
    {
        if (!_loaded)
        {
            await LoadJobsAsync(cancellationToken);
            _loaded = true;
        }

        var now = _time.GetUtcNow();
        var active = (await _store.ListActiveBatchesAsync(cancellationToken)).Where(b => b.Mode is BatchMode.Native or BatchMode.Auto).ToList();
        foreach (var batch in active.Where(b => b.ExpiresAt <= now && b.ExpiredAt is null))
        {
            await _store.ExpireBatchAsync(batch.Id, now, cancellationToken);
        }

        var batchIds = active.Select(b => b.Id).Concat(_jobs.Values.Select(j => j.Record.BatchId)).Distinct(StringComparer.Ordinal).ToList();
        foreach (var batchId in batchIds)
        {
            if (await _store.GetBatchAsync(batchId, cancellationToken) is { } batch)
            {
                await ClaimAndSubmitAsync(await PlanAsync(batch, cancellationToken), cancellationToken);
            }
        }

        foreach (var job in _jobs.Values.ToList())
        {
            await AdvanceAsync(job, cancellationToken);
        }

        foreach (var batchId in batchIds)
        {
            Holds.HoldNative(batchId, HeldBy(batchId));
        }
    }

    private void Forget()
    {
        _jobs.Clear();
        _jobOfItem.Clear();
        _submitBackoff.Clear();
        _loaded = false;
    }

    private async Task LoadJobsAsync(CancellationToken cancellationToken)
    {
        foreach (var record in await _store.ListOpenNativeJobsAsync(cancellationToken))
        {
            var job = new Job(record, [.. await _store.ListNativeJobItemsAsync(record.Id, cancellationToken)]);
            _jobs[record.Id] = job;
            foreach (var item in job.ItemIds)
            {
                _jobOfItem[item] = job;
            }
        }
    }

    /// <summary>
    /// Leases the batch's queued native items: those a recorded job holds (queued again by a
    /// restart) go back to it; the others go into new jobs, within the budget, or end unsent when
    /// the batch no longer runs, or go to realtime when the planner cut the batch over.
    /// </summary>
    private async Task ClaimAndSubmitAsync(BatchRecord batch, CancellationToken cancellationToken)
    {
        if (_submitBackoff.TryGetValue(batch.Id, out var retryAt) && retryAt > _time.GetUtcNow())
        {
            return;
        }

        var runs = batch.Status == BatchStatus.InProgress && batch.ExpiredAt is null && batch.CutOverAt is null;
        var models = batch.Status == BatchStatus.InProgress
            ? await _store.ListActiveModelsAsync(batch.Id, cancellationToken)
            : await QueuedModelsAsync(batch.Id, cancellationToken);
        var budget = new JobBudget(batch, HeldBy(batch.Id), Holds);
        // Each request's size is read only where it is needed: for a budget, or for the planner of an auto batch.
        var sized = batch.BudgetNanos is not null || batch.Mode == BatchMode.Auto;
        var rules = OutputRules.Of(batch);
        foreach (var model in models)
        {
            var provider = _providers.FirstOrDefault(p => p.Runs(batch.Endpoint ?? "") && p.Options.Serves(model));
            var builder = provider is null ? null : new NativeJobBuilder(provider, batch);
            try
            {
                var stop = false;
                while (!stop)
                {
                    var now = _time.GetUtcNow();
                    var claimed = await _store.ClaimNativeAsync(model, batch.Id, _options.ClaimChunk, now, now + _options.LeaseDuration, cancellationToken);
                    if (claimed.Count == 0)
                    {
                        break;
                    }

                    var items = runs && provider is not null ? await AnswerFromCacheAsync(batch, provider, claimed, cancellationToken) : claimed;

                    var unsent = new List<ItemOutcome>();
                    var toRealtime = new List<long>();
                    foreach (var item in items)
                    {
                        if (_jobOfItem.TryGetValue(item.ItemId, out var job))
                        {
                            job.Lease(NativeJobBuilder.Lean(item), sized ? Worst(item) : 0, rules.ContractOf(item.Url, item.Body));
                        }
                        else if (!runs || stop)
                        {
                            // A batch cut over sends the rest in realtime; one that stopped ends it; a refused or waiting job leaves it queued.
                            var kind = stop ? OutcomeKind.Released : OutcomePolicy.Unsent(batch);
                            unsent.Add(new ItemOutcome(item, kind, new AttemptResult()));
                            if (!stop && batch.CutOverAt is not null)
                            {
                                toRealtime.Add(item.ItemId);
                            }
                        }
                        else if (builder is null)
                        {
                            unsent.Add(new ItemOutcome(item, OutcomeKind.Failed, new AttemptResult
                            {
                                ErrorCode = "native_batch_unavailable",
                                ErrorMessage = $"no upstream with a native batch API serves the model {model} at {batch.Endpoint}",
                            }));
                        }
                        else
                        {
                            var worst = sized ? Worst(item) : 0;
                            if (builder.Count > 0 && (!builder.Fits(item) || !budget.Fits(builder.WorstNanos + worst)))
                            {
                                // The job is full, or as large as the budget lets it be: it goes, and what it may cost is held.
                                var full = builder;
                                var held = full.WorstNanos;
                                builder = new NativeJobBuilder(full.Provider, batch);
                                stop = !await SubmitAsync(full, cancellationToken);
                                budget.Hold(stop ? 0 : held);
                            }

                            if (!stop && budget.Fits(worst))
                            {
                                builder.Add(item, worst);
                                if (rules.ContractOf(item.Url, item.Body) is { } contract)
                                {
                                    _claimContracts[item.ItemId] = contract;
                                }
                            }
                            else if (!stop && budget.Held > 0)
                            {
                                // It fits once the jobs now open have ended and given back what they hold: it waits.
                                stop = true;
                                unsent.Add(new ItemOutcome(item, OutcomeKind.Released, new AttemptResult()));
                            }
                            else
                            {
                                unsent.Add(new ItemOutcome(item, stop ? OutcomeKind.Released : OutcomeKind.Failed, stop ? new AttemptResult() : budget.Exceeded(worst)));
                            }
                        }
                    }

                    await _store.MoveItemsAsync(toRealtime, ItemTier.Realtime, cancellationToken);
                    await CommitAsync(unsent, cancellationToken);
                }

                if (builder is { Count: > 0 })
                {
                    var last = builder;
                    builder = null;
                    await SubmitAsync(last, cancellationToken);
                }
            }
            finally
            {
                builder?.Dispose();
                _claimKeys.Clear();
                _claimContracts.Clear();
            }
        }
    }

    /// <summary>
    /// Answers the claimed items the answer cache holds (not handed to the provider, not paid
    /// for) and returns the others; their keys are kept for the job they go into, so its answers
    /// are kept in turn. A cache that cannot be read answers none.
    /// </summary>
    private async Task<IReadOnlyList<ClaimedItem>> AnswerFromCacheAsync(BatchRecord batch, NativeProvider provider, IReadOnlyList<ClaimedItem> items, CancellationToken cancellationToken)
    {
        if (AnswerCache is not { } cache)
        {
            return items;
        }

        var keys = new Dictionary<long, string>();
        foreach (var item in items.Where(i => !_jobOfItem.ContainsKey(i.ItemId)))
        {
            if (CacheKeys.For(batch.Cache, batch.Owner, provider.Options.Kind, item) is { } key)
            {
                keys[item.ItemId] = _claimKeys[item.ItemId] = key;
            }
        }

        var found = await CacheKeys.FindAsync(cache, keys, cancellationToken);
        var hits = items.Where(item => found.ContainsKey(item.ItemId)).Select(item => new ItemOutcome(item, OutcomeKind.Succeeded, CacheKeys.Answer(found[item.ItemId], item, _prices))).ToList();
        foreach (var hit in hits)
        {
            Telemetry?.AnsweredFromCache(hit.Result);
        }

        await CommitAsync(hits, cancellationToken);
        return hits.Count == 0 ? items : [.. items.Where(item => !found.ContainsKey(item.ItemId))];
    }

    /// <summary>The most an item may cost at the batch price: its prompt and its <c>max_tokens</c> (or the default output length).</summary>
    private long Worst(ClaimedItem item)
    {
        var (prompt, output) = _estimator.Estimate(item.Model, item.Body);
        // Its size also tells the planner what realtime's token limits allow for the model.
        var tokens = (double)prompt + (output ?? _defaultOutputTokens);
        _tokens[item.Model] = _tokens.TryGetValue(item.Model, out var seen) ? (seen.Sum + tokens, seen.Count + 1) : (tokens, 1);
        return _prices.Price(item.Model, prompt, output ?? _defaultOutputTokens, batch: true).Nanos;
    }

    /// <summary>What the open jobs of a batch hold against its budget.</summary>
    private long HeldBy(string batchId) => _jobs.Values.Where(j => j.Record.BatchId == batchId).Sum(j => j.HeldNanos);

    /// <summary>
    /// The models of a batch's queued items: of a batch that is no longer in progress, these are
    /// items a restart queued again while their job was still at the provider.
    /// </summary>
    private async Task<List<string>> QueuedModelsAsync(string batchId, CancellationToken cancellationToken)
    {
        var models = new HashSet<string>(StringComparer.Ordinal);
        await foreach (var request in _store.ReadRequestsAsync(batchId, [ItemState.Queued], cancellationToken))
        {
            models.Add(request.Model);
        }

        return [.. models];
    }

    /// <summary>Hands a job to its provider and records it; on a refusal its items go back to the queue and this returns false. Disposes the builder.</summary>
    private async Task<bool> SubmitAsync(NativeJobBuilder builder, CancellationToken cancellationToken)
    {
        var batch = builder.Batch;
        string providerBatchId;
        try
        {
            await using var content = builder.Finish();
            providerBatchId = await builder.Provider.SubmitAsync(content, batch.Endpoint!, batch.Id, cancellationToken);
        }
        catch (NativeBatchException ex)
        {
            // Nothing was created (or nothing we can know of): the items go back to the queue, unspent, and are tried again later.
            LogSubmitFailed(batch.Id, builder.Provider.Name, ex.Message);
            NoteRefusal(builder.Provider, ex);
            _submitBackoff[batch.Id] = _time.GetUtcNow() + _options.PollInterval;
            await CommitAsync([.. builder.Items.Select(i => new ItemOutcome(i, OutcomeKind.Released, new AttemptResult()))], CancellationToken.None);
            return false;
        }
        finally
        {
            builder.Dispose();
        }

        // Recorded before anything else: a restart from here on polls this job instead of creating another.
        var record = await _store.AddNativeJobAsync(batch.Id, builder.Provider.Name, providerBatchId, [.. builder.Items.Select(i => i.ItemId)], _time.GetUtcNow(), CancellationToken.None);
        var job = new Job(record, [.. builder.Items.Select(i => i.ItemId)]) { HeldNanos = builder.WorstNanos };
        foreach (var item in builder.Items)
        {
            job.Leases[item.ItemId] = item;
            _jobOfItem[item.ItemId] = job;
            if (_claimKeys.Remove(item.ItemId, out var key))
            {
                job.CacheKeys[item.ItemId] = key;
            }

            if (_claimContracts.Remove(item.ItemId, out var contract))
            {
                job.Contracts[item.ItemId] = contract;
            }
        }

        _jobs[record.Id] = job;
        LogSubmitted(batch.Id, builder.Items.Count, builder.Provider.Name, providerBatchId);
        return true;
    }

    private async Task CommitAsync(List<ItemOutcome> outcomes, CancellationToken cancellationToken)
    {
        if (outcomes.Count == 0)
        {
            return;
        }

        var summary = await _store.CommitAsync(outcomes, _time.GetUtcNow(), cancellationToken);
        if (summary.CompletedBatches.Count > 0)
        {
            BatchesEnded?.Invoke();
        }
    }

    private void Forget(Job job)
    {
        _jobs.Remove(job.Record.Id);
        foreach (var item in job.ItemIds)
        {
            _jobOfItem.Remove(item);
        }

        Holds.HoldNative(job.Record.BatchId, HeldBy(job.Record.BatchId));
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Batch {BatchId}: {Count} requests handed to {Upstream} as its batch {ProviderBatchId}")]
    private partial void LogSubmitted(string batchId, int count, string upstream, string providerBatchId);

    // A provider's refusal is said in its own words (the exception's message); its stack says nothing more.
    [LoggerMessage(Level = LogLevel.Warning, Message = "Batch {BatchId}: handing requests to {Upstream} failed ({Reason}); they wait for the next try")]
    private partial void LogSubmitFailed(string batchId, string upstream, string reason);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Provider batch {ProviderBatchId} on {Upstream} could not be read ({Reason}); it is asked again later")]
    private partial void LogPollFailed(string providerBatchId, string upstream, string reason);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Provider batch {ProviderBatchId} on {Upstream} could not be cancelled ({Reason})")]
    private partial void LogCancelFailed(string providerBatchId, string upstream, string reason);

    [LoggerMessage(Level = LogLevel.Information, Message = "Batch {BatchId}: provider batch {ProviderBatchId} ended {Status} with {Lines} result lines; {Resubmitted} requests go again")]
    private partial void LogJobEnded(string batchId, string providerBatchId, string status, int lines, int resubmitted);

    [LoggerMessage(Level = LogLevel.Error, Message = "A look at native batches failed; the next look tries again")]
    private partial void LogCycleFailed(Exception exception);

    /// <summary>A job at a provider, with the leases of its items (once claimed in this run) and what they may cost.</summary>
    private sealed class Job(NativeJob record, HashSet<long> itemIds)
    {
        public NativeJob Record { get; set; } = record;

        public HashSet<long> ItemIds { get; } = itemIds;

        public Dictionary<long, ClaimedItem> Leases { get; } = [];

        /// <summary>The answer cache's key of each item sent in this run, so its answer is kept; a job recorded by an earlier run has none.</summary>
        public Dictionary<long, string> CacheKeys { get; } = [];

        /// <summary>What each leased item asks its answer to be; items of free text have none.</summary>
        public Dictionary<long, OutputContract> Contracts { get; } = [];

        /// <summary>The most its leased items may cost, held against the batch's budget until the job ends.</summary>
        public long HeldNanos { get; set; }

        /// <summary>Set once the planner gave its items to realtime without waiting for the provider's cancel to land.</summary>
        public bool Abandoned { get; set; }

        /// <summary>Takes back the lease of an item this job holds (claimed again after a restart), with what it asks its answer to be.</summary>
        public void Lease(ClaimedItem item, long worstNanos, OutputContract? contract)
        {
            if (Leases.TryAdd(item.ItemId, item))
            {
                HeldNanos += worstNanos;
            }

            if (contract is not null)
            {
                Contracts[item.ItemId] = contract;
            }
        }
    }

    /// <summary>A batch's budget as native jobs see it: what is spent, what open jobs hold, and what a new one may add.</summary>
    private sealed class JobBudget(BatchRecord batch, long held, BudgetHolds holds)
    {
        public long Held { get; private set; } = held;

        /// <summary>True when <paramref name="nanos"/> more fits beside what is spent, what open jobs hold and what the dispatcher's requests in flight hold (always, without a budget).</summary>
        public bool Fits(long nanos) => batch.BudgetNanos is not { } limit || batch.CostNanos + Held + holds.Realtime(batch.Id) + nanos <= limit;

        public void Hold(long nanos)
        {
            Held += nanos;
            holds.HoldNative(batch.Id, Held);
        }

        /// <summary>The failure of an item that does not fit beside what is spent.</summary>
        public AttemptResult Exceeded(long worstNanos) => BatchBudget.Exceeded(batch.BudgetNanos ?? 0, batch.CostNanos, worstNanos);
    }
}
