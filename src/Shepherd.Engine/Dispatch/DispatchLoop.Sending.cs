using Shepherd.Engine.Formats;
using Shepherd.Engine.Model;
using Shepherd.Engine.Upstreams;

namespace Shepherd.Engine.Dispatch;

/// <content>
/// Sending: each queue claims what it lacks, and its items go to the lane a weighted round robin
/// picks among those with room, within their batch's budget; the request itself runs off the loop.
/// </content>
internal sealed partial class DispatchLoop
{
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
        while (queue.Items.TryDequeue(out var work, out _))
        {
            // Realtime calls are kept: their callers wait for them, and hear at once when no lane can take them.
            if (kept.Count < keep || work.Call is not null)
            {
                kept.Add(work);
            }
            else
            {
                Emit(new ItemOutcome(work.Item, OutcomeKind.Released, new AttemptResult()));
            }
        }

        kept.ForEach(queue.Enqueue);
    }

    /// <summary>Sends queued items while some lane of the model has room; returns the wait for the next, if a lane said.</summary>
    private TimeSpan? Admit(ModelQueue queue, DateTimeOffset now, CancellationToken cancellationToken)
    {
        while (queue.Items.TryPeek(out var work, out _))
        {
            if (work.Call is { IsDone: true })
            {
                // Its caller has left, or had its answer by the deadline.
                queue.Items.Dequeue();
                continue;
            }

            // Answers not yet recorded are sent again after a crash: while the store lags, as many
            // as two rounds of the lanes' concurrency wait for it, and nothing more of batches is
            // sent until it catches up (each commit wakes the loop). Realtime calls record nothing.
            if (work.Call is null && _signals.Uncommitted >= UncommittedCap)
            {
                return null;
            }

            if (queue.Lanes.Count == 0)
            {
                queue.Items.Dequeue();
                End(work, OutcomeKind.Failed, new AttemptResult
                {
                    ErrorCode = "model_not_served",
                    ErrorMessage = $"no configured upstream serves the model {queue.Model}",
                });
                continue;
            }

            _budgets.TryGetValue(work.Item.BatchId, out var budget);
            if (work.PromptTokens is null && (budget is not null || queue.Lanes.Any(l => l.CountsTokens)))
            {
                (work.PromptTokens, work.MaxOutputTokens) = _estimator.Estimate(queue.Model, work.Item.Body);
            }

            // The most it may cost at the price of its tier: a flex request pays the batch price.
            var most = budget is null ? 0 : _prices.Price(queue.Model, work.PromptTokens ?? 0, work.MaxOutputTokens ?? _options.DefaultOutputTokens, batch: work.Item.Tier == ItemTier.Flex).Nanos;
            if (budget is not null && budget.Committed + most > budget.Limit)
            {
                queue.Items.Dequeue();
                if (budget.SpentByAll + most <= budget.Limit)
                {
                    // It fits once what others hold has settled: it waits for their answers.
                    work.MostNanos = most;
                    budget.Waiting.Enqueue(work);
                    queue.Parked++;
                    continue;
                }

                Emit(new ItemOutcome(work.Item, OutcomeKind.Failed, budget.Exceeded(most)));
                continue;
            }

            var lane = Pick(queue, work, now, out var laneWait);
            if (lane is null && work.Call is { } call && queue.IsBlocked)
            {
                queue.Items.Dequeue();
                Unavailable(call, queue, now);
                continue;
            }

            if (lane is null)
            {
                if (laneWait is not null)
                {
                    _telemetry?.WaitedForRate(queue.Model);
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
            _counters.Started();
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
            if (work.Call is { } call)
            {
                response = await CallAsync(call, lane, cancellationToken);
            }
            else
            {
                var body = work.Item.Tier == ItemTier.Flex ? FlexTier.Body(work.Item.Body) : work.Item.Body;
                response = await lane.Upstream.Client.SendAsync(work.Url, body, cancellationToken);
            }
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested || work.Call?.Aborted.IsCancellationRequested == true)
        {
            // On stop, or when a call's caller left: nothing to record.
            response = null;
        }
#pragma warning disable CA1031 // A fault in one send must not strand its item: it becomes a transient failure, retried.
        catch (Exception ex)
#pragma warning restore CA1031
        {
            response = new UpstreamResponse { FailureCode = FailureCodes.ConnectionError, FailureMessage = $"unexpected {ex.GetType().Name}: {ex.Message}" };
        }

        var classified = response is null ? default : AttemptClassifier.Classify(response, lane.Upstream.Kind);
        if (response is not null && classified.Verdict == Verdict.Success && work.Contract is { } contract)
        {
            // Checked here, off the loop: the check is the only costly part of deciding an answer.
            var result = OutputRules.Checked(contract, work.Url, classified.Result);
            classified = classified with { Verdict = result.Fits == false ? Verdict.Unfit : Verdict.Success, Result = result };
        }

        if (work.Call is { Stream: false } waiting && response is not null && classified.Verdict is Verdict.Success or Verdict.Permanent)
        {
            // A final answer goes to its caller from here, not after a turn of the loop: the loop
            // still learns from it, prices it and counts it, but the caller does not wait for that.
            waiting.Reply(RealtimeAnswer.Of(response, work.Item.Attempt));
        }

        span?.SetTag("http.response.status_code", response?.StatusCode);
        span?.SetTag("shepherd.failure", response?.FailureCode);
        _signals.Tell(new AnsweredEvent(work, lane, reservation, response, classified));
    }

    /// <summary>
    /// Sends a realtime call, cancelled with its caller. A streamed 2xx answer goes to the caller
    /// as soon as its headers are in; the call holds its lane until the relay ends, and is priced
    /// by the usage its events carried. A stream that reported none (a provider that ignores
    /// <c>stream_options</c>) is priced by its prompt as counted and its text at four bytes a token.
    /// </summary>
    private async Task<UpstreamResponse> CallAsync(RealtimeCall call, Lane lane, CancellationToken cancellationToken)
    {
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, call.Aborted);
        var (response, open) = await lane.Upstream.Client.CallAsync(call.Url, call.Body, call.Stream, linked.Token);
        if (open is null)
        {
            return response;
        }

        var relay = new StreamRelay(open, call.HideUsage);
        if (!call.Reply(new RealtimeAnswer { StatusCode = response.StatusCode, Headers = response.Headers ?? [], Events = relay, Attempts = call.Attempts + 1 }))
        {
            await relay.DisposeAsync();
        }

        var usage = await relay.Ended;
        if (usage == default && relay.TextBytes > 0)
        {
            usage = (_estimator.Estimate(call.Model, call.Body).PromptTokens, (int)Math.Min(int.MaxValue, (relay.TextBytes + 3) / 4), 0);
        }

        return response with { Body = StreamRelay.UsageBody(usage) };
    }
}
