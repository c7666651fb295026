using System.Diagnostics;
using Shepherd.Engine.Dispatch;
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

        var stopping = batch.Status is BatchStatus.Cancelling or BatchStatus.Cancelled || batch.ExpiredAt is not null;
        if (stopping && !record.CancelRequested)
        {
            try
            {
                await provider.CancelAsync(record.ProviderBatchId, cancellationToken);
            }
            catch (NativeBatchException ex)
            {
                // It may have ended meanwhile; polling tells.
                LogCancelFailed(record.ProviderBatchId, provider.Name, ex);
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
            LogPollFailed(record.ProviderBatchId, provider.Name, ex);
            return;
        }

        if (!state.Ended)
        {
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
            LogPollFailed(record.ProviderBatchId, provider.Name, ex);
            return;
        }

        // Read again: a cancel may have come in while the results were read.
        batch = await _store.GetBatchAsync(record.BatchId, cancellationToken) ?? batch;
        var outcomes = new List<ItemOutcome>(job.Leases.Count);
        var now = _time.GetUtcNow();
        var resubmitted = 0;
        foreach (var item in job.Leases.Values)
        {
            var outcome = Decide(item, lines.GetValueOrDefault(item.ItemId), batch, state, now);
            resubmitted += outcome.Kind == OutcomeKind.Retry ? 1 : 0;
            outcomes.Add(outcome);
        }

        await CommitAsync(outcomes, CancellationToken.None);
        await _store.UpdateNativeJobAsync(record.Id, NativeJobStatus.Ended, record.CancelRequested, CancellationToken.None);
        Forget(job);
        LogJobEnded(record.BatchId, record.ProviderBatchId, state.Status, lines.Count, resubmitted);
        if (resubmitted > 0)
        {
            NotifyBatchesChanged();
        }
    }

    private ItemOutcome Decide(ClaimedItem item, NativeLine? line, BatchRecord batch, ProviderState state, DateTimeOffset now)
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
        var decision = _policy.Decide(new Answer(verdict, item.Attempt) { Batch = OutcomePolicy.StandingOf(batch) }, now);
        return decision.Kind switch
        {
            OutcomeKind.Succeeded => new ItemOutcome(item, OutcomeKind.Succeeded, Priced(item, line!)),
            OutcomeKind.Cancelled or OutcomeKind.Expired => new ItemOutcome(item, decision.Kind.Value, new AttemptResult()),
            { } kind => new ItemOutcome(item, kind, Failure(line, state), decision.NextAttemptAt),
            null => throw new UnreachableException("A native job's answer never waits for a lane."),
        };
    }

    /// <summary>A succeeded line, its tokens priced at the batch discount.</summary>
    private AttemptResult Priced(ClaimedItem item, NativeLine line)
    {
        var result = new AttemptResult { StatusCode = line.StatusCode, RequestId = line.RequestId, Body = line.Body };
        if (line.Body is { } body && UsageReader.TryRead(body, out var input, out var output, out var cached) && input + output > 0)
        {
            var cost = _prices.Price(item.Model, input, output, cached, batch: true);
            result = result with { InputTokens = input, OutputTokens = output, CachedTokens = cached, CostNanos = cost.Nanos, Priced = cost.Priced };
        }

        return result;
    }

    private static AttemptResult Failure(NativeLine? line, ProviderState state) => line is null
        ? new AttemptResult { ErrorCode = "native_result_missing", ErrorMessage = $"the provider batch ended {state.Status} without a result for this request" }
        : new AttemptResult { StatusCode = line.StatusCode, RequestId = line.RequestId, Body = line.Body, ErrorCode = line.ErrorCode, ErrorMessage = line.ErrorMessage };
}
