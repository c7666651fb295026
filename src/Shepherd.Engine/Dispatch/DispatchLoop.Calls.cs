namespace Shepherd.Engine.Dispatch;

/// <content>
/// Realtime calls: queued ahead of batch work on the same lanes, answered to their callers and
/// never to the store, tried again after a transient failure while their deadline allows.
/// </content>
internal sealed partial class DispatchLoop
{
    /// <summary>Queues a call at the front of its model's queue, made for it when no batch has the model.</summary>
    private void Enqueue(RealtimeCall call)
    {
        if (call.IsDone)
        {
            return;
        }

        if (!_queues.TryGetValue(call.Model, out var queue))
        {
            _queues[call.Model] = queue = new ModelQueue(call.Model, LanesFor(call.Model, Now));
        }

        queue.Enqueue(new WorkItem(call.AsItem(), call.Url, ++_order) { Call = call });
    }

    /// <summary>
    /// Answers a call that no lane can take now because every lane of its model is stopped (its
    /// upstream is down, or refuses the key): its caller hears so at once instead of waiting.
    /// </summary>
    private static void Unavailable(RealtimeCall call, ModelQueue queue, DateTimeOffset now)
    {
        var lane = queue.Lanes[0];
        var upstream = lane.Upstream;
        call.Reply(new RealtimeAnswer
        {
            Attempts = call.Attempts,
            Error = lane.RefusedSince is not null
                ? KeyRefused(lane, lane.Refusal)
                : new RealtimeError(503, "upstream_unavailable", $"The provider of {lane.Model} is down ({upstream.LastFailure}); call again later.",
                    upstream.Breaker.OpenUntil > now ? upstream.Breaker.OpenUntil - now : null),
        });
    }

    /// <summary>The error of a call whose upstream refuses Shepherd's own key: not the caller's to fix, so no 401. The caller is not told which upstream (the log says).</summary>
    private static RealtimeError KeyRefused(Lane lane, string? reason) =>
        new(502, "upstream_key_refused", $"The provider refuses the key Shepherd holds for {lane.Model} ({reason}); the operator must fix it.");

    /// <summary>What an answer does to its call: given to the caller, or tried again (queued for the lane, or after a delay) while the deadline allows.</summary>
    private void Answered(RealtimeCall call, WorkItem work, Lane lane, Upstreams.UpstreamResponse response, Verdict verdict, Model.AttemptResult result, OutcomeDecision decision)
    {
        call.Attempts = work.Item.Attempt;
        call.Last = response;
        _signals.Spent(call.Owner, result.CostNanos);
        _telemetry?.CalledRealtime(call.Owner, result);
        if (decision.Kind is null)
        {
            if (verdict == Verdict.Refused)
            {
                call.Reply(new RealtimeAnswer { Attempts = call.Attempts, Error = KeyRefused(lane, lane.Refusal ?? $"HTTP {response.StatusCode}") });
                return;
            }

            // A rate limit or an outage uses no attempt: the call waits for its lane again.
            call.Attempts = work.Item.Attempt - 1;
            Requeue(work, lane, result);
            return;
        }

        if (decision.Kind == Model.OutcomeKind.Retry && decision.NextAttemptAt < call.Deadline)
        {
            _counters.Retried();
            _telemetry?.Retried(lane.Upstream.Name, lane.Model, "retry");
            LogCallRetry(call.Owner ?? "", lane.Model, work.Item.Attempt, lane.Upstream.Name, result, decision.Delay.TotalMilliseconds);
            ITimer? timer = null;
            timer = _time.CreateTimer(_ =>
            {
                _signals.Tell(new CallEvent(call));
                timer?.Dispose();
            }, null, decision.Delay, Timeout.InfiniteTimeSpan);
            return;
        }

        if (verdict != Verdict.Success)
        {
            LogCallFailed(call.Owner ?? "", lane.Model, work.Item.Attempt, lane.Upstream.Name, result);
        }

        call.Reply(RealtimeAnswer.Of(response, call.Attempts));
    }

    [Microsoft.Extensions.Logging.LoggerMessage(Level = Microsoft.Extensions.Logging.LogLevel.Debug, Message = "Realtime call of {Tenant} to {Model}: attempt {Attempt} on {Upstream} failed ({Reason}); trying again in {DelayMs:0} ms")]
    private partial void LogCallRetry(string tenant, string model, int attempt, string upstream, Model.AttemptResult reason, double delayMs);

    [Microsoft.Extensions.Logging.LoggerMessage(Level = Microsoft.Extensions.Logging.LogLevel.Information, Message = "Realtime call of {Tenant} to {Model}: attempt {Attempt} on {Upstream} ended it ({Reason})")]
    private partial void LogCallFailed(string tenant, string model, int attempt, string upstream, Model.AttemptResult reason);
}
