using Microsoft.Extensions.Logging;
using Shepherd.Engine.Dispatch;
using Shepherd.Engine.Model;
using Shepherd.Engine.Storage;

namespace Shepherd.Engine.Native;

/// <content>
/// The planner of <see cref="BatchMode.Auto"/> batches: a request goes native where a batch API
/// serves its model, flex where an upstream offers that tier, realtime otherwise; and at the last
/// safe moment before the deadline (the batch's <see cref="BatchRecord.ExpiresAt"/>) what is
/// still open moves to realtime. That moment is the deadline less the time realtime needs for
/// every open request of the batch at its lanes' rates, less a margin: a quarter of that time,
/// two looks at the provider and the grace a cancelled job is given to end
/// (<see cref="NativeBatchOptions.CancelGrace"/>).
/// </content>
public sealed partial class NativeBatchRunner
{
    /// <summary>
    /// Requests per second realtime sends of a model (its requests being of the given size in
    /// tokens, prompt and output allowance, when known), from the lanes' learned or configured
    /// limits; null when none is known. The host sets it from the dispatcher.
    /// </summary>
    public Func<string, double?, double?>? RealtimeRate { get; set; }

    /// <summary>
    /// When set, <see cref="RunAsync"/> returns once a provider refused the API key (401 or 403),
    /// as <c>shepherd run</c> wants: nothing it sends would be accepted. A server keeps trying.
    /// </summary>
    public bool StopOnRefusedKey { get; set; }

    /// <summary>The upstream that refused the API key, and the refusal in the provider's words; null while none has.</summary>
    public (string Upstream, string Reason)? RefusedKey { get; private set; }

    private void NoteRefusal(NativeProvider provider, NativeBatchException exception)
    {
        if (exception.StatusCode is 401 or 403)
        {
            RefusedKey = (provider.Name, exception.Message);
        }
    }

    /// <summary>What the dispatcher and the runner hold against budgets, told to each other; the host gives both the same.</summary>
    internal BudgetHolds Holds { get; set; } = new();

    /// <summary>
    /// Routes an auto batch's requests and cuts it over to realtime when its last safe moment has
    /// come. Returns the batch as it now stands.
    /// </summary>
    private async Task<BatchRecord> PlanAsync(BatchRecord batch, CancellationToken cancellationToken)
    {
        if (batch.Mode != BatchMode.Auto || batch.Status != BatchStatus.InProgress || batch.ExpiredAt is not null)
        {
            return batch;
        }

        var open = await _store.ListOpenItemsAsync(batch.Id, cancellationToken);
        foreach (var model in open.Where(o => o.Tier == ItemTier.Native).Select(o => o.Model).Distinct(StringComparer.Ordinal))
        {
            var endpoint = batch.Endpoint ?? "";
            if (!CanRun(model, endpoint))
            {
                await _store.MoveTierAsync(batch.Id, model, [ItemTier.Native], CanFlex(model, endpoint) ? ItemTier.Flex : ItemTier.Realtime, cancellationToken);
            }
        }

        if (batch.CutOverAt is not null || batch.ExpiresAt is not { } deadline)
        {
            return batch;
        }

        var now = _time.GetUtcNow();
        var need = RealtimeNeed(open);
        if (now < _options.LastSafeMoment(deadline, need))
        {
            return batch;
        }

        await _store.CutOverAsync(batch.Id, now, cancellationToken);
        var moving = open.Sum(o => o.Tier == ItemTier.Realtime ? 0 : o.Count);
        LogCutOver(batch.Id, moving, need.TotalSeconds, (deadline - now).TotalSeconds);
        return batch with { CutOverAt = now };
    }

    /// <summary>How long realtime takes to send every open request of a batch, model by model, at the lanes' rates.</summary>
    private TimeSpan RealtimeNeed(IReadOnlyList<OpenItems> open) =>
        open.GroupBy(o => o.Model, StringComparer.Ordinal)
            .Aggregate(TimeSpan.Zero, (sum, model) => sum + _options.RealtimeNeed(model.Sum(o => o.Count), RealtimeRate?.Invoke(model.Key, TokensPerRequest(model.Key))));

    /// <summary>The average size in tokens (prompt and output allowance) of the requests of a model this runner has seen; null before any.</summary>
    private double? TokensPerRequest(string model) =>
        _tokens.TryGetValue(model, out var seen) && seen.Count > 0 ? seen.Sum / seen.Count : null;

    [LoggerMessage(Level = LogLevel.Information, Message = "Batch {BatchId}: {Open} requests not yet answered by a cheaper tier move to realtime, which needs about {NeedSeconds:F0} s for what is open; the deadline is in {LeftSeconds:F0} s")]
    private partial void LogCutOver(string batchId, long open, double needSeconds, double leftSeconds);
}
