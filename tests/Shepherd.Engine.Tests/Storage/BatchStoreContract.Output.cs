using Shepherd.Engine.Model;
using Shepherd.Engine.Upstreams;

namespace Shepherd.Engine.Tests.Storage;

public abstract partial class BatchStoreContract
{
    private static AttemptResult Unfit(long cost) => new()
    {
        StatusCode = 200, Body = "{\"ok\":0}"u8.ToArray(), InputTokens = 7, OutputTokens = 3, CostNanos = cost, Fits = false,
        ErrorCode = FailureCodes.InvalidOutput, ErrorMessage = "the answer does not fit the schema: /score: required",
    };

    [Fact]
    public async Task AnswersThatDoNotFit_AreCountedAndPaid_TheirItemsKnowHowOftenTheyWereAskedAgain()
    {
        await Store.CreateBatchAsync(new NewBatch("batch_schema", null) { OutputSchema = """{"type":"object"}""", MaxReasks = 3 }, Ct);
        var kept = await Store.GetBatchAsync("batch_schema", Ct);
        Assert.Equal(("""{"type":"object"}""", (int?)3), (kept!.OutputSchema, kept.MaxReasks));
        await Store.SetOutputRulesAsync("batch_schema", null, 0, Ct);
        kept = await Store.GetBatchAsync("batch_schema", Ct);
        Assert.Equal((null, (int?)0), (kept!.OutputSchema, kept.MaxReasks));

        var id = await CreateAcceptedBatchAsync(3);
        var first = await ClaimAsync(id, 3);
        Assert.All(first, item => Assert.Equal(0, item.Reasks));
        // One fits at once; two do not and are asked again; an outcome of a lease no longer held counts nothing.
        await Store.CommitAsync(
            [Success(first[0]) with { Result = Success(first[0]).Result with { Fits = true } },
             new ItemOutcome(first[1], OutcomeKind.Retry, Unfit(100), Time.GetUtcNow()),
             new ItemOutcome(first[2], OutcomeKind.Retry, Unfit(200), Time.GetUtcNow())],
            Time.GetUtcNow(), Ct);
        await Store.CommitAsync([new ItemOutcome(first[2], OutcomeKind.Retry, Unfit(999), Time.GetUtcNow())], Time.GetUtcNow(), Ct);
        var second = await ClaimAsync(id, 3);
        Assert.Equal([(2L, 1, 2), (3L, 1, 2)], second.Select(item => (item.Line, item.Reasks, item.Attempt)));

        await Store.CommitAsync(
            [Success(second[0]) with { Result = Success(second[0]).Result with { Fits = true } },
             new ItemOutcome(second[1], OutcomeKind.Failed, Unfit(300))],
            Time.GetUtcNow(), Ct);

        var batch = (await Store.GetBatchAsync(id, Ct))!;
        Assert.Equal(new OutputTally(1, 1, 1, 2, 300), batch.Output);
        Assert.Equal((BatchStatus.Completed, 2L, 1L), (batch.Status, batch.Succeeded, batch.Failed));
        var success = Success(first[0]).Result;
        Assert.Equal(2 * success.CostNanos + 100 + 200 + 300, batch.CostNanos);
        Assert.Equal(2 * success.InputTokens + (3 * 7), batch.InputTokens);
        var failed = (await Store.ReadResultsAsync(id, 0, Ct).ToListAsync(Ct))[2];
        Assert.Equal((ItemState.Failed, 200, FailureCodes.InvalidOutput), (failed.State, failed.Result!.StatusCode, failed.Result.ErrorCode));
        Assert.Equal("{\"ok\":0}"u8.ToArray(), failed.Result.Body);

        // Retried, the failed one is asked afresh, and no longer counted invalid.
        Assert.Equal(1, await Store.RequeueFailedAsync(id, null, Ct));
        Assert.Equal(0, (await Store.GetBatchAsync(id, Ct))!.Output.Invalid);
        Assert.Equal(0, Assert.Single(await ClaimAsync(id, 3)).Reasks);
    }
}
