using System.Diagnostics;
using Microsoft.Extensions.Logging;
using Shepherd.Engine.Dispatch;
using Shepherd.Engine.Formats;
using Shepherd.Engine.Model;

namespace Shepherd.Engine.Native;

/// <content>
/// Jobs at the providers: cancelled there when their batch stops, polled, and once ended their
/// results read back and each item's outcome decided by the same <see cref="OutcomePolicy"/>
/// as the dispatch loop's answers.
/// </content>
public sealed partial class NativeBatchRunner
{
    /// <summary>Cancels the job at the provider when its batch was cancelled or expired; reads its results once it ended.</summary>
    private async Task AdvanceAsync(Job job, CancellationToken cancellationToken)
    {
        var record = job.Record;
        var provider = _providers.FirstOrDefault(p => p.Name == record.Upstream);
        var batch = await _store.GetBatchAsync(record.BatchId, cancellationToken);
        if (provider is null || batch is null)
        {
            // The upstream left the configuration, or the batch was deleted: nothing can be read back.
            Forget(job);
            if (batch is not null)
            {
                await CommitAsync([.. job.Leases.Values.Select(i => new ItemOutcome(i, OutcomeKind.Failed, new AttemptResult
                {
                    ErrorCode = "native_batch_unavailable",
                    ErrorMessage = $"the upstream {record.Upstream} that ran the provider batch {record.ProviderBatchId} is no longer configured",
                }))], cancellationToken);
            }

            await _store.UpdateNativeJobAsync(record.Id, NativeJobStatus.Ended, record.CancelRequested, CancellationToken.None);
            return;
        }

        // A batch the planner cut over stops its jobs too: what they have not answered goes in realtime.
        var stopping = batch.Status is BatchStatus.Cancelling or BatchStatus.Cancelled || batch.ExpiredAt is not null || batch.CutOverAt is not null;
        if (stopping && !record.CancelRequested)
        {
            try
            {
                await provider.CancelAsync(record.ProviderBatchId, cancellationToken);
            }
            catch (NativeBatchException ex)
            {
                // It may have ended meanwhile; polling tells.
                LogCancelFailed(record.ProviderBatchId, provider.Name, ex.Message);
            }

            job.Record = record = record with { CancelRequested = true };
            await _store.UpdateNativeJobAsync(record.Id, NativeJobStatus.Submitted, cancelRequested: true, cancellationToken);
        }

        ProviderState state;
        try
        {
            state = await provider.PollAsync(record.ProviderBatchId, cancellationToken);
        }
        catch (NativeBatchException ex)
        {
            LogPollFailed(record.ProviderBatchId, provider.Name, ex.Message);
            NoteRefusal(provider, ex);
            return;
        }

        if (!state.Ended)
        {
            await AbandonIfOverdueAsync(job, batch, cancellationToken);
            return;
        }

        var lines = new Dictionary<long, NativeLine>();
        try
        {
            await foreach (var line in provider.ReadResultsAsync(record.ProviderBatchId, state, cancellationToken))
            {
                if (job.ItemIds.Contains(line.ItemId))
                {
                    lines[line.ItemId] = line;
                }
            }
        }
        catch (NativeBatchException ex)
        {
            LogPollFailed(record.ProviderBatchId, provider.Name, ex.Message);
            NoteRefusal(provider, ex);
            return;
        }

        // Read again: a cancel may have come in while the results were read.
        batch = await _store.GetBatchAsync(record.BatchId, cancellationToken) ?? batch;
        await RecoverCacheKeysAsync(job, batch, provider.Options.Kind, cancellationToken);
        var outcomes = new List<ItemOutcome>(job.Leases.Count);
        var toRealtime = new List<long>();
        var now = _time.GetUtcNow();
        var resubmitted = 0;
        foreach (var item in job.Leases.Values)
        {
            var line = lines.GetValueOrDefault(item.ItemId);
            var outcome = Decide(item, line, batch, state, now, job.Contracts.GetValueOrDefault(item.ItemId));
            if (batch.Mode == BatchMode.Auto && outcome.Kind is OutcomeKind.Retry or OutcomeKind.Failed && line?.Fate != LineFate.Permanent
                && outcome.Result.Fits is null && (batch.CutOverAt is not null || outcome.Kind == OutcomeKind.Failed))
            {
                // Planned: what the provider did not answer after the cut-over, or could not answer in
                // as many jobs as a request gets attempts, goes in realtime (its attempt given back).
                outcome = new ItemOutcome(item, OutcomeKind.Released, new AttemptResult());
                toRealtime.Add(item.ItemId);
            }

            resubmitted += outcome.Kind == OutcomeKind.Retry ? 1 : 0;
            Telemetry?.Checked(outcome);
            if (outcome.Kind == OutcomeKind.Succeeded)
            {
                Telemetry?.AnsweredBy(ItemTier.Native, outcome.Result);
                if (job.CacheKeys.TryGetValue(item.ItemId, out var key) && Storage.CacheKeys.Kept(outcome.Result) is { } kept)
                {
                    AnswerCache?.Add(key, kept);
                }
            }

            outcomes.Add(outcome);
        }

        if (job.Abandoned)
        {
            // Its items went to realtime before it ended: a line it answered anyway was paid twice.
            var twice = lines.Values.Count(l => l.Fate == LineFate.Succeeded);
            PaidTwice += twice;
            Telemetry?.PaidTwice(twice);
            LogAnsweredAfterAbandon(record.ProviderBatchId, twice);
        }

        await _store.MoveItemsAsync(toRealtime, ItemTier.Realtime, CancellationToken.None);
        await CommitAsync(outcomes, CancellationToken.None);
        // Told after the store has it: the dispatcher may count it twice for a moment, never miss it.
        Holds.SpendNative(record.BatchId, outcomes.Sum(o => o.Result.CostNanos));
        await _store.UpdateNativeJobAsync(record.Id, NativeJobStatus.Ended, record.CancelRequested, CancellationToken.None);
        Forget(job);
        LogJobEnded(record.BatchId, record.ProviderBatchId, state.Status, lines.Count, resubmitted);
        if (resubmitted > 0)
        {
            NotifyBatchesChanged();
        }
    }

    /// <summary>
    /// Lines a provider finished after the planner gave their requests to realtime (its cancel had
    /// not landed within <see cref="NativeBatchOptions.CancelGrace"/>): answers paid twice.
    /// </summary>
    public long PaidTwice { get; private set; }

    /// <summary>Where the runner counts its answers by tier for monitoring; the host sets it to the dispatcher's.</summary>
    public DispatchTelemetry? Telemetry { get; set; }

    /// <summary>Answers kept across runs and batches: what it holds is not handed to a provider again, and what jobs answer is kept in it; null for none.</summary>
    public Storage.AnswerCache? AnswerCache { get; set; }

    /// <summary>
    /// A job the planner asked to cancel that has not ended within the grace: its requests go to
    /// realtime now, so the deadline holds; the job is still polled, and what it answers anyway is
    /// counted as paid twice.
    /// </summary>
    private async Task AbandonIfOverdueAsync(Job job, BatchRecord batch, CancellationToken cancellationToken)
    {
        if (batch.CutOverAt is not { } cutOver || !job.Record.CancelRequested || job.Leases.Count == 0 || _time.GetUtcNow() < cutOver + _options.CancelGrace)
        {
            return;
        }

        var items = job.Leases.Values.ToList();
        job.Leases.Clear();
        job.HeldNanos = 0;
        job.Abandoned = true;
        await _store.MoveItemsAsync([.. items.Select(i => i.ItemId)], ItemTier.Realtime, cancellationToken);
        await CommitAsync([.. items.Select(i => new ItemOutcome(i, OutcomeKind.Released, new AttemptResult()))], CancellationToken.None);
        LogAbandoned(job.Record.ProviderBatchId, items.Count, _options.CancelGrace.TotalSeconds);
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Provider batch {ProviderBatchId} has not ended {GraceSeconds:F0} s after its cancel: its {Count} requests go in realtime now")]
    private partial void LogAbandoned(string providerBatchId, int count, double graceSeconds);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Provider batch {ProviderBatchId} ended after its requests went to realtime: {Count} of its lines were answered twice")]
    private partial void LogAnsweredAfterAbandon(string providerBatchId, int count);

    private ItemOutcome Decide(ClaimedItem item, NativeLine? line, BatchRecord batch, ProviderState state, DateTimeOffset now, OutputContract? contract)
    {
        // Transient, missing, or cut short by the provider are alike: another attempt may answer. A
        // provider's job has no lane to wait for, so neither a rate limit nor an outage is told:
        // each uses an attempt like any transient failure.
        var verdict = line?.Fate switch
        {
            LineFate.Succeeded => Verdict.Success,
            LineFate.Permanent => Verdict.Permanent,
            _ => Verdict.Transient,
        };
        var answer = verdict == Verdict.Success ? Priced(item, line!) : null;
        if (answer is not null && contract is not null)
        {
            // Checked as the dispatcher checks its answers; one that does not fit goes into the next job while re-asks are left.
            answer = OutputRules.Checked(contract, batch.Endpoint ?? "", answer);
            verdict = answer.Fits == true ? Verdict.Success : Verdict.Unfit;
        }

        var decision = _policy.Decide(new Answer(verdict, item.Attempt - item.Reasks)
        {
            Batch = OutcomePolicy.StandingOf(batch), Reasks = item.Reasks, MaxReasks = OutputRules.MaxReasksOf(batch),
        }, now);
        return decision.Kind switch
        {
            OutcomeKind.Succeeded => new ItemOutcome(item, OutcomeKind.Succeeded, answer!),
            { } kind when verdict == Verdict.Unfit => new ItemOutcome(item, kind, answer!, decision.NextAttemptAt),
            OutcomeKind.Cancelled or OutcomeKind.Expired => new ItemOutcome(item, decision.Kind.Value, new AttemptResult()),
            { } kind => new ItemOutcome(item, kind, Failure(line, state), decision.NextAttemptAt),
            null => throw new UnreachableException("A native job's answer never waits for a lane."),
        };
    }

    /// <summary>
    /// The cache keys of a job an earlier process handed over (the keys of a job live with it in
    /// memory): made again from its requests' bodies in the store, so that what it answers is kept too.
    /// </summary>
    private async Task RecoverCacheKeysAsync(Job job, BatchRecord batch, Upstreams.UpstreamKind kind, CancellationToken cancellationToken)
    {
        if (AnswerCache is null || job.CacheKeys.Count > 0 || job.Leases.Count == 0 || batch.Cache == CacheUse.Off)
        {
            return;
        }

        var leased = job.Leases.Values.ToDictionary(item => item.CustomId, StringComparer.Ordinal);
        await foreach (var request in _store.ReadRequestsAsync(batch.Id, [ItemState.Leased], cancellationToken))
        {
            if (leased.TryGetValue(request.CustomId, out var item)
                && Storage.CacheKeys.For(batch.Cache, batch.Owner, kind, item with { Body = request.Body }) is { } key)
            {
                job.CacheKeys[item.ItemId] = key;
            }
        }
    }

    /// <summary>A succeeded line, its tokens priced at the batch discount.</summary>
    private AttemptResult Priced(ClaimedItem item, NativeLine line)
    {
        var result = new AttemptResult { StatusCode = line.StatusCode, RequestId = line.RequestId, Body = line.Body };
        return line.Body is { } body && UsageReader.TryRead(body, out var input, out var output, out var cached)
            ? _prices.PriceAnswer(item.Model, ItemTier.Native, result with { InputTokens = input, OutputTokens = output, CachedTokens = cached })
            : result;
    }

    private static AttemptResult Failure(NativeLine? line, ProviderState state) => line is null
        ? new AttemptResult { ErrorCode = "native_result_missing", ErrorMessage = $"the provider batch ended {state.Status} without a result for this request" }
        : new AttemptResult { StatusCode = line.StatusCode, RequestId = line.RequestId, Body = line.Body, ErrorCode = line.ErrorCode, ErrorMessage = line.ErrorMessage };
}
