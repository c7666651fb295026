using Shepherd.Engine.Model;
using Shepherd.Engine.Storage;
using Shepherd.Engine.Upstreams;

namespace Shepherd.Engine.Tests.Storage;

/// <summary>The plan both stores write a commit by, on its own: no database.</summary>
public sealed class CommitPlanTests
{
    private static readonly AttemptResult Answer = new() { StatusCode = 200, InputTokens = 10, OutputTokens = 5, CostNanos = 700 };

    private static ItemOutcome Outcome(long itemId, string batchId, OutcomeKind kind, AttemptResult? result = null) =>
        new(new ClaimedItem(itemId, batchId, itemId, $"c{itemId}", "gpt-4.1-mini", [], 1, BatchPriority.Normal, "/v1/chat/completions") { Lease = itemId * 10 },
            kind, result ?? new AttemptResult());

    [Fact]
    public void EachOutcome_GoesToTheSetOfWhatItDoesToItsItem_InTheOrderItCame()
    {
        var plan = CommitPlan.Of(
            [
                Outcome(1, "b", OutcomeKind.Succeeded, Answer), Outcome(2, "b", OutcomeKind.Retry), Outcome(3, "b", OutcomeKind.Released),
                Outcome(4, "b", OutcomeKind.Expired), Outcome(5, "b", OutcomeKind.Failed), Outcome(6, "b", OutcomeKind.Cancelled),
                Outcome(7, "b", OutcomeKind.Released), Outcome(8, "b", OutcomeKind.Retry),
            ],
            _ => false);

        Assert.Equal([3L, 7L], plan.Released.Ids());
        Assert.Equal([4L, 6L], plan.Unsent.Ids());
        Assert.Equal([2L, 8L], plan.Retried.Ids());
        Assert.Equal([1L, 5L], plan.Ended.Ids());
        Assert.Equal([30L, 70L], plan.Released.Leases());
        Assert.Equal(OutcomeKind.Failed, plan.Ended.ById[5].Kind);
    }

    [Fact]
    public void AnItemHandedBack_ByABatchBeingCancelled_EndsCancelled_TheOthersAreQueuedAgain()
    {
        var plan = CommitPlan.Of([Outcome(1, "cancelling", OutcomeKind.Released), Outcome(2, "open", OutcomeKind.Released)], batch => batch == "cancelling");

        Assert.Equal([2L], plan.Released.Ids());
        var ended = Assert.Single(plan.Unsent.Outcomes);
        Assert.Equal((1L, OutcomeKind.Cancelled), (ended.Item.ItemId, ended.Kind));
        Assert.Equal([(int)ItemState.Cancelled], plan.Unsent.States());
    }

    [Fact]
    public void WhetherABatchIsBeingCancelled_IsAskedOnlyForItemsHandedBack_OnceABatch()
    {
        var asked = new List<string>();
        CommitPlan.Of(
            [
                Outcome(1, "a", OutcomeKind.Released), Outcome(2, "a", OutcomeKind.Released), Outcome(3, "b", OutcomeKind.Succeeded, Answer),
                Outcome(4, "c", OutcomeKind.Retry), Outcome(5, "b", OutcomeKind.Released), Outcome(6, "a", OutcomeKind.Released),
            ],
            batch =>
            {
                asked.Add(batch);
                return false;
            });

        Assert.Equal(["a", "b"], asked);
    }

    [Fact]
    public void AnOutcome_LeavesItsItemInItsState_WithTheErrorButNeverForASuccess()
    {
        Assert.Equal(ItemState.Succeeded, CommitPlan.EndState(OutcomeKind.Succeeded));
        Assert.Equal(ItemState.Failed, CommitPlan.EndState(OutcomeKind.Failed));
        Assert.Equal(ItemState.Cancelled, CommitPlan.EndState(OutcomeKind.Cancelled));
        Assert.Equal(ItemState.Expired, CommitPlan.EndState(OutcomeKind.Expired));

        var plan = CommitPlan.Of(
            [
                Outcome(1, "b", OutcomeKind.Succeeded, Answer), Outcome(2, "b", OutcomeKind.Failed, new AttemptResult { StatusCode = 400 }),
                Outcome(3, "b", OutcomeKind.Failed, new AttemptResult { ErrorCode = "request_timeout", ErrorMessage = "no answer" }),
            ],
            _ => false);

        Assert.Equal([(int)ItemState.Succeeded, (int)ItemState.Failed, (int)ItemState.Failed], plan.Ended.States());
        Assert.Equal<IEnumerable<string?>>([null, "HTTP 400", "request_timeout: no answer"], plan.Ended.Errors());
        Assert.Equal("HTTP 503", CommitPlan.ErrorOf(Outcome(4, "b", OutcomeKind.Retry, new AttemptResult { StatusCode = 503 })));
    }

    [Fact]
    public void OnlyOutcomesThatTookEffect_AddToTheirBatch_AndBatchesComeInTheOrderOfTheirIds()
    {
        var succeeded = Outcome(1, "b2", OutcomeKind.Succeeded, Answer);
        var unpriced = Outcome(2, "b2", OutcomeKind.Succeeded, Answer with { Priced = false, CostNanos = 0 });
        var overBudget = Outcome(3, "b2", OutcomeKind.Failed, new AttemptResult { ErrorCode = FailureCodes.BudgetExceeded, ErrorMessage = "over" });
        var lost = Outcome(4, "b2", OutcomeKind.Succeeded, Answer);
        var cancelled = Outcome(5, "b1", OutcomeKind.Released);
        var expired = Outcome(6, "b1", OutcomeKind.Expired);
        var plan = CommitPlan.Of([succeeded, unpriced, overBudget, lost, cancelled, expired], batch => batch == "b1");

        foreach (var outcome in plan.Ended.Outcomes.Where(o => o != lost).Concat(plan.Unsent.Outcomes))
        {
            plan.Count(outcome);
        }

        var counts = plan.Counts.ToList();
        Assert.Equal(["b1", "b2"], counts.Select(c => c.Key));
        var b1 = counts[0].Value;
        Assert.Equal((0L, 0L, 1L, 1L), (b1.Succeeded, b1.Failed, b1.Cancelled, b1.Expired));
        var b2 = counts[1].Value;
        Assert.Equal((2L, 1L, 0L, 0L), (b2.Succeeded, b2.Failed, b2.Cancelled, b2.Expired));
        Assert.Equal((20L, 10L, 700L, 1L, 1L), (b2.InputTokens, b2.OutputTokens, b2.CostNanos, b2.Unpriced, b2.BudgetExceeded));
    }

    [Fact]
    public void ACommitWhoseOutcomesAllLostTheirLease_CountsNothing()
    {
        var plan = CommitPlan.Of([Outcome(1, "b", OutcomeKind.Succeeded, Answer), Outcome(2, "b", OutcomeKind.Cancelled)], _ => false);

        Assert.Empty(plan.Counts);
    }
}
