using System.Globalization;
using Shepherd.Engine.Model;
using Shepherd.Engine.Pricing;
using Shepherd.Engine.Upstreams;

namespace Shepherd.Engine.Dispatch;

/// <summary>
/// A batch's budget as the loop keeps it: what its recorded answers cost, plus the most the
/// requests now in flight may cost. A request is sent only when both, with its own most,
/// stay within the limit; so the spending can pass the limit only by what answers exceed
/// their estimate. A request that would fit once the others' holds settle waits for them
/// in <see cref="Waiting"/>; only one that does not fit beside what is spent is not sent.
/// </summary>
internal sealed class BatchBudget(string batchId, long limit, long spent, BudgetHolds holds)
{
    /// <summary>What the native answers of the batch had cost in this process when the loop read the batch's spending from the store.</summary>
    private readonly long _nativeSpentAtStart = holds.NativeSpent(batchId);

    private long _reserved;

    public long Limit { get; } = limit;

    /// <summary>What the batch's answers cost: as the store had it, plus this loop's answers since.</summary>
    public long Spent { get; set; } = spent;

    /// <summary>What this loop's requests in flight may cost; the native runner is told.</summary>
    public long Reserved
    {
        get => _reserved;
        set
        {
            _reserved = value;
            holds.HoldRealtime(batchId, value);
        }
    }

    /// <summary>What is spent, the loop's and the native runner's since the loop read the store.</summary>
    public long SpentByAll => Spent + holds.NativeSpent(batchId) - _nativeSpentAtStart;

    /// <summary>What is spent and what every request in flight and every open native job may cost.</summary>
    public long Committed => SpentByAll + Reserved + holds.Native(batchId);

    /// <summary>Requests taken from their queues to wait for the holds of requests in flight to settle, in order.</summary>
    public Queue<WorkItem> Waiting { get; } = new();

    /// <summary>The failure of a request that may cost up to <paramref name="most"/>, which does not fit beside what is spent.</summary>
    public AttemptResult Exceeded(long most) => Exceeded(Limit, SpentByAll, most);

    /// <summary>The failure of a request that may cost up to <paramref name="most"/>, which does not fit in <paramref name="limit"/> beside <paramref name="spent"/>.</summary>
    public static AttemptResult Exceeded(long limit, long spent, long most) => new()
    {
        ErrorCode = FailureCodes.BudgetExceeded,
        ErrorMessage = string.Create(CultureInfo.InvariantCulture,
            $"not sent: the budget of the batch is {Cost.Describe(limit)} and {Cost.Describe(spent)} of it is spent, so {Cost.Describe(limit - spent)} is left; this request may cost up to {Cost.Describe(most)}"),
    };
}
