using System.Collections.Concurrent;
using System.Threading.Channels;
using Microsoft.Extensions.Logging;
using Shepherd.Engine.Storage;
using Shepherd.Engine.Upstreams;

namespace Shepherd.Engine.Dispatch;

/// <summary>
/// Sends the items of every active batch to the upstream. Items are leased from the store in
/// chunks, sent by a fixed number of workers, and their outcomes group-committed: many in one
/// transaction, so the store is never what limits throughput. A transient failure goes back to
/// the store with the time of its next attempt, so a pending retry survives a restart.
/// </summary>
public sealed partial class Dispatcher
{
    private readonly IBatchStore _store;
    private readonly UpstreamClient _upstream;
    private readonly DispatchOptions _options;
    private readonly TimeProvider _time;
    private readonly Random _random;
    private readonly ILogger _logger;
    private readonly AsyncSignal _wake = new();
    private readonly ConcurrentDictionary<string, TaskCompletionSource> _waiters = new(StringComparer.Ordinal);
    private long _outstanding;
    private int _batchesChanged = 1;

    /// <summary>Creates a dispatcher; the options are copied.</summary>
    public Dispatcher(IBatchStore store, UpstreamClient upstream, DispatchOptions options, TimeProvider timeProvider, Random random, ILogger<Dispatcher> logger)
    {
        ArgumentNullException.ThrowIfNull(store);
        ArgumentNullException.ThrowIfNull(upstream);
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(timeProvider);
        ArgumentNullException.ThrowIfNull(random);
        ArgumentNullException.ThrowIfNull(logger);
        _store = store;
        _upstream = upstream;
        _options = options.Validated();
        _time = timeProvider;
        _random = random;
        _logger = logger;
    }

    /// <summary>Live counters for progress displays.</summary>
    public DispatchCounters Counters { get; } = new();

    /// <summary>Tells the dispatcher that a batch became active, so it need not wait for its next look.</summary>
    public void NotifyBatchesChanged()
    {
        Volatile.Write(ref _batchesChanged, 1);
        _wake.Set();
    }

    /// <summary>Completes when the batch has left <see cref="BatchStatus.InProgress"/>.</summary>
    public async Task WaitForBatchAsync(string batchId, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(batchId);
        // Registered before the store is read, so a completion between the two is not missed.
        var waiter = _waiters.GetOrAdd(batchId, _ => new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously));
        var batch = await _store.GetBatchAsync(batchId, cancellationToken)
            ?? throw new InvalidOperationException($"There is no batch {batchId}.");
        if (batch.Status is not (BatchStatus.InProgress or BatchStatus.Validating))
        {
            _waiters.TryRemove(batchId, out _);
            return;
        }

        await waiter.Task.WaitAsync(cancellationToken);
    }

    /// <summary>
    /// Dispatches the items of <paramref name="onlyBatchId"/>, or of every active batch when it
    /// is null, until <paramref name="stoppingToken"/> is cancelled. On stop, requests in
    /// flight are abandoned (their items stay leased and run again after a restart), items
    /// claimed but not yet sent are queued again, and every outcome already received is
    /// committed before this returns.
    /// </summary>
    public async Task RunAsync(string? onlyBatchId, CancellationToken stoppingToken)
    {
        using var run = CancellationTokenSource.CreateLinkedTokenSource(stoppingToken);
        var work = Channel.CreateUnbounded<WorkItem>(new UnboundedChannelOptions { SingleWriter = true });
        var outcomes = Channel.CreateUnbounded<ItemOutcome>(new UnboundedChannelOptions { SingleReader = true });
        var committer = CommitLoopAsync(outcomes.Reader, run);
        var workers = new Task[_options.Concurrency];
        for (var i = 0; i < workers.Length; i++)
        {
            workers[i] = WorkAsync(work.Reader, outcomes.Writer, run.Token);
        }

        try
        {
            await ClaimLoopAsync(work.Writer, onlyBatchId, run.Token);
        }
        catch (OperationCanceledException) when (run.IsCancellationRequested)
        {
        }
        finally
        {
            work.Writer.TryComplete();
            await Task.WhenAll(workers);
            while (work.Reader.TryRead(out var unsent))
            {
                outcomes.Writer.TryWrite(new ItemOutcome(unsent.Item, OutcomeKind.Released, new AttemptResult()));
            }

            outcomes.Writer.TryComplete();
        }

        await committer;
    }

    private async Task ClaimLoopAsync(ChannelWriter<WorkItem> work, string? onlyBatchId, CancellationToken cancellationToken)
    {
        // Claim ahead of the workers by one round, so none waits for the store.
        var capacity = 2L * _options.Concurrency;
        var lowWater = Math.Max(1, _options.Concurrency / 2);
        IReadOnlyList<BatchRecord> batches = [];
        var nextRefresh = DateTimeOffset.MinValue;
        var cursor = 0;
        while (true)
        {
            cancellationToken.ThrowIfCancellationRequested();
            var now = _time.GetUtcNow();
            if (Interlocked.Exchange(ref _batchesChanged, 0) == 1 || now >= nextRefresh)
            {
                batches = await _store.ListActiveBatchesAsync(cancellationToken);
                if (onlyBatchId is not null)
                {
                    batches = [.. batches.Where(b => b.Id == onlyBatchId)];
                }

                nextRefresh = now + _options.IdlePollInterval;
            }

            var room = capacity - Volatile.Read(ref _outstanding);
            var claimed = 0;
            if (room >= lowWater && batches.Count > 0)
            {
                var share = Math.Max(1, (int)(room / batches.Count));
                for (var i = 0; i < batches.Count && room > 0; i++)
                {
                    var batch = batches[(cursor + i) % batches.Count];
                    var items = await _store.ClaimAsync(batch.Id, (int)Math.Min(share, room), now, now + _options.LeaseDuration, cancellationToken);
                    Interlocked.Add(ref _outstanding, items.Count);
                    room -= items.Count;
                    claimed += items.Count;
                    foreach (var item in items)
                    {
                        work.TryWrite(new WorkItem(item, batch.Endpoint!));
                    }
                }

                cursor++;
            }

            if (claimed > 0)
            {
                continue;
            }

            await _wake.WaitAsync(await IdleWaitAsync(batches, room >= lowWater, now, cancellationToken), _time, cancellationToken);
        }
    }

    private async Task<TimeSpan> IdleWaitAsync(IReadOnlyList<BatchRecord> batches, bool hasRoom, DateTimeOffset now, CancellationToken cancellationToken)
    {
        var wait = _options.IdlePollInterval;
        if (!hasRoom)
        {
            // Full: a commit frees room and wakes the loop.
            return wait;
        }

        foreach (var batch in batches)
        {
            if (await _store.NextDueAsync(batch.Id, cancellationToken) is { } due)
            {
                var untilDue = due - now;
                if (untilDue < wait)
                {
                    wait = untilDue < TimeSpan.Zero ? TimeSpan.Zero : untilDue;
                }
            }
        }

        return wait;
    }

    private async Task WorkAsync(ChannelReader<WorkItem> work, ChannelWriter<ItemOutcome> outcomes, CancellationToken cancellationToken)
    {
        try
        {
            while (await work.WaitToReadAsync(cancellationToken))
            {
                while (!cancellationToken.IsCancellationRequested && work.TryRead(out var next))
                {
                    outcomes.TryWrite(await AttemptAsync(next, cancellationToken));
                }
            }
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
        }
    }

    private async Task<ItemOutcome> AttemptAsync(WorkItem work, CancellationToken cancellationToken)
    {
        var item = work.Item;
        Counters.Started();
        UpstreamResponse response;
        try
        {
            response = await _upstream.SendAsync(work.Url, item.Body, cancellationToken);
        }
        catch
        {
            Counters.Ended(null);
            throw;
        }

        Counters.Ended(response.StatusCode);

        var (verdict, result, retryAfter) = AttemptClassifier.Classify(response, _upstream.Kind);
        switch (verdict)
        {
            case Verdict.Success:
                return new ItemOutcome(item, OutcomeKind.Succeeded, result);
            case Verdict.Transient when item.Attempt < _options.MaxAttempts:
                TimeSpan delay;
                lock (_random)
                {
                    delay = Backoff.Delay(item.Attempt, _options.RetryBaseDelay, _options.RetryMaxDelay, retryAfter, _random);
                }

                Counters.Retried();
                LogRetry(item.BatchId, item.CustomId, item.Attempt, result, delay.TotalMilliseconds);
                return new ItemOutcome(item, OutcomeKind.Retry, result, _time.GetUtcNow() + delay);
            default:
                LogFailed(item.BatchId, item.CustomId, item.Attempt, result);
                return new ItemOutcome(item, OutcomeKind.Failed, result);
        }
    }

    private async Task CommitLoopAsync(ChannelReader<ItemOutcome> outcomes, CancellationTokenSource run)
    {
        var pending = new List<ItemOutcome>(_options.MaxCommitBatch);
        while (await outcomes.WaitToReadAsync(CancellationToken.None))
        {
            while (pending.Count < _options.MaxCommitBatch && outcomes.TryRead(out var outcome))
            {
                pending.Add(outcome);
            }

            CommitSummary summary;
            try
            {
                // Not cancellable: outcomes already paid for are written even while stopping.
                summary = await _store.CommitAsync(pending, _time.GetUtcNow(), CancellationToken.None);
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

            Interlocked.Add(ref _outstanding, -pending.Count);
            pending.Clear();
            foreach (var batchId in summary.CompletedBatches)
            {
                if (_waiters.TryRemove(batchId, out var waiter))
                {
                    waiter.TrySetResult();
                }

                Volatile.Write(ref _batchesChanged, 1);
            }

            _wake.Set();
        }
    }

    [LoggerMessage(Level = LogLevel.Debug, Message = "Batch {BatchId} item {CustomId}: attempt {Attempt} failed ({Reason}); retrying in {DelayMs:0} ms")]
    private partial void LogRetry(string batchId, string customId, int attempt, AttemptResult reason, double delayMs);

    [LoggerMessage(Level = LogLevel.Information, Message = "Batch {BatchId} item {CustomId}: failed after attempt {Attempt} ({Reason})")]
    private partial void LogFailed(string batchId, string customId, int attempt, AttemptResult reason);

    [LoggerMessage(Level = LogLevel.Critical, Message = "The store could not record outcomes; dispatch stops and the items run again after a restart")]
    private partial void LogCommitFailed(Exception exception);

    private readonly record struct WorkItem(ClaimedItem Item, string Url);
}
