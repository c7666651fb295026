using Microsoft.Extensions.Logging;
using Shepherd.Engine.Model;
using Shepherd.Engine.Storage;

namespace Shepherd.Engine.Dispatch;

/// <content>
/// Answers: the lane learns from each, the batch's budget is settled, and the
/// <see cref="OutcomePolicy"/> decides what it does to its item.
/// </content>
internal sealed partial class DispatchLoop
{
    private void Answered(AnsweredEvent answered)
    {
        var (work, lane, reservation, response, classified) = answered;
        var now = Now;
        var latency = now - reservation.At;
        // Priced once, at the price of the tier that answered: recorded with the answer and counted against the batch's budget.
        var priced = classified.Result is { } answer
            ? _prices.PriceAnswer(work.Item.Model, work.Item.Tier, answer) with { LatencyMs = (int)Math.Min(int.MaxValue, latency.TotalMilliseconds) }
            : null;
        Settle(work, priced);
        if (response is null)
        {
            // Abandoned on stop: the item stays leased and runs again after a restart.
            lane.Abandon();
            work.Call?.Reply(new RealtimeAnswer { Attempts = work.Call.Attempts, Error = new RealtimeError(503, "server_stopping", "Shepherd stopped before the answer came; call again.", TimeSpan.FromSeconds(1)) });
            _counters.Ended(null);
            _telemetry?.Answered(lane.Upstream.Name, lane.Model, "abandoned", null, null, latency);
            return;
        }

        // A flex request refused for want of capacity is no rate limit: neither counted as one nor a lesson for the lane.
        var flexRefused = work.Item.Tier == ItemTier.Flex && FlexTier.IsRefusal(response);
        _counters.Ended(flexRefused ? null : response.StatusCode);

        var (verdict, _, retryAfter) = classified;
        var result = priced!;
        var change = flexRefused ? lane.Unavailable(reservation) : lane.Complete(reservation, response, verdict, result.OutputTokens, now);
        if (change != default)
        {
            Report(lane, change, now);
            PublishLanes(now);
        }

        var item = work.Item;
        _telemetry?.Answered(lane.Upstream.Name, lane.Model, verdict switch
        {
            Verdict.Success => "succeeded",
            Verdict.Transient => "transient_failure",
            Verdict.Refused => "key_refused",
            Verdict.Unfit => "invalid_output",
            _ => "failed",
        }, response, result, latency);
        var decision = _policy.Decide(new Answer(verdict, item.Attempt - item.Reasks)
        {
            Reasks = item.Reasks,
            MaxReasks = work.MaxReasks,
            RateLimited = response.StatusCode == 429 && !flexRefused,
            UpstreamDown = lane.Upstream.IsDown,
            InFailureRun = lane.InFailureRun,
            RetryAfter = retryAfter,
        }, now);
        if (work.Call is { } call)
        {
            Answered(call, work, lane, response, verdict, result, decision);
            return;
        }

        if (decision.Kind is not { } kind)
        {
            Requeue(work, lane, result);
            return;
        }

        switch (kind)
        {
            case OutcomeKind.Retry:
                // Asking again for an answer that did not fit is no retry of a failure: the summary counts it apart.
                if (verdict != Verdict.Unfit)
                {
                    _counters.Retried();
                }

                _telemetry?.Retried(lane.Upstream.Name, lane.Model, verdict == Verdict.Unfit ? "invalid_output" : "retry");
                LogRetry(item.BatchId, item.CustomId, item.Attempt, lane.Upstream.Name, result, decision.Delay.TotalMilliseconds);
                break;
            case OutcomeKind.Failed:
                LogFailed(item.BatchId, item.CustomId, item.Attempt, lane.Upstream.Name, result);
                break;
        }

        if (kind == OutcomeKind.Succeeded)
        {
            _telemetry?.AnsweredBy(item.Tier, result);
            if (work.CacheKey is { } key && CacheKeys.Kept(result) is { } kept)
            {
                _cache?.Add(key, kept);
            }
        }

        var outcome = new ItemOutcome(item, kind, result, decision.NextAttemptAt);
        _telemetry?.Checked(outcome);
        Emit(outcome);
    }

    private void Requeue(WorkItem work, Lane lane, AttemptResult reason)
    {
        _counters.Requeue();
        _telemetry?.Retried(lane.Upstream.Name, lane.Model, "requeued");
        LogRequeued(work.Item.BatchId, work.Item.CustomId, lane.Upstream.Name, reason);
        _queues[lane.Model].Enqueue(work);
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
    private void Unpark(BatchBudget budget, bool all)
    {
        // What goes back is counted as held already: the queue reserves it when it sends it.
        var going = 0L;
        while (budget.Waiting.TryPeek(out var work) && (all || budget.Committed + going + work.MostNanos <= budget.Limit))
        {
            budget.Waiting.Dequeue();
            going += work.MostNanos;
            var queue = _queues[work.Item.Model];
            queue.Parked--;
            queue.Enqueue(work);
        }
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
}
