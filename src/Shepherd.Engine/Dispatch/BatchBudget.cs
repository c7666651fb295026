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
internal sealed class BatchBudget(long limit, long spent)
{
    public long Limit { get; } = limit;

    public long Spent { get; set; } = spent;

    public long Reserved { get; set; }

    /// <summary>Requests taken from their queues to wait for the holds of requests in flight to settle, in order.</summary>
    public Queue<WorkItem> Waiting { get; } = new();

    /// <summary>The failure of a request that may cost up to <paramref name="most"/>, which does not fit beside what is spent.</summary>
    public AttemptResult Exceeded(long most) => new()
    {
        ErrorCode = FailureCodes.BudgetExceeded,
        ErrorMessage = string.Create(CultureInfo.InvariantCulture,
            $"not sent: the budget of the batch is {Cost.Describe(Limit)} and {Cost.Describe(Spent)} of it is spent, so {Cost.Describe(Limit - Spent)} is left; this request may cost up to {Cost.Describe(most)}"),
    };
}
