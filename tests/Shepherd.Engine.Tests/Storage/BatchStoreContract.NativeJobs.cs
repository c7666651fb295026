using System.Text;
using Shepherd.Engine.Formats;
using Shepherd.Engine.Model;
using Shepherd.Engine.Storage;

namespace Shepherd.Engine.Tests.Storage;

/// <summary>The store's side of native batch mode: the batch's mode, the claim that leaves native batches alone, and the recorded provider jobs.</summary>
public abstract partial class BatchStoreContract
{
    [Fact]
    public async Task ANativeBatch_IsClaimedOnlyByName_AndItsJobsAreRecorded()
    {
        var now = Time.GetUtcNow();
        await CreateNativeOrRealtimeAsync("batch_rt", BatchMode.Realtime);
        await CreateNativeOrRealtimeAsync("batch_nat", BatchMode.Native);

        Assert.Equal(BatchMode.Native, (await Store.GetBatchAsync("batch_nat", Ct))!.Mode);
        var realtime = await Store.ClaimAsync("m", null, 10, now, now.AddMinutes(1), Ct);
        Assert.All(realtime, item => Assert.Equal("batch_rt", item.BatchId));
        Assert.Equal(2, realtime.Count);
        Assert.All(realtime, item => Assert.Equal(ItemTier.Realtime, item.Tier));
        Assert.Null(await Store.NextDueAsync("m", null, Ct));
        Assert.Null(await Store.NextDueAsync("m", "batch_nat", Ct));
        Assert.Empty(await Store.ClaimAsync("m", "batch_nat", 10, now, now.AddHours(25), Ct));

        var native = await Store.ClaimNativeAsync("m", "batch_nat", 10, now, now.AddHours(25), Ct);
        Assert.Equal(2, native.Count);
        Assert.All(native, item => Assert.Equal(ItemTier.Native, item.Tier));
        var job = await Store.AddNativeJobAsync("batch_nat", "openai", "batch_provider_1", [.. native.Select(i => i.ItemId)], now, Ct);

        var open = Assert.Single(await Store.ListOpenNativeJobsAsync(Ct));
        Assert.Equal((job.Id, "batch_nat", "openai", "batch_provider_1", false), (open.Id, open.BatchId, open.Upstream, open.ProviderBatchId, open.CancelRequested));
        Assert.Equal(native.Select(i => i.ItemId).Order(), await Store.ListNativeJobItemsAsync(job.Id, Ct));

        await Store.UpdateNativeJobAsync(job.Id, NativeJobStatus.Submitted, cancelRequested: true, Ct);
        Assert.True(Assert.Single(await Store.ListOpenNativeJobsAsync(Ct)).CancelRequested);
        await Store.UpdateNativeJobAsync(job.Id, NativeJobStatus.Ended, cancelRequested: true, Ct);
        Assert.Empty(await Store.ListOpenNativeJobsAsync(Ct));
        Assert.Equal(NativeJobStatus.Ended, Assert.Single(await Store.ListNativeJobsAsync("batch_nat", Ct)).Status);

        await Store.DeleteBatchAsync("batch_nat", Ct);
        Assert.Empty(await Store.ListNativeJobsAsync("batch_nat", Ct));
    }

    [Fact]
    public async Task ARestart_ReleasesTheItemsOfAnOpenJob_WithoutSpendingAnAttempt()
    {
        var now = Time.GetUtcNow();
        await CreateNativeOrRealtimeAsync("batch_nat", BatchMode.Native);
        var first = await Store.ClaimNativeAsync("m", "batch_nat", 10, now, now.AddHours(25), Ct);
        await Store.AddNativeJobAsync("batch_nat", "openai", "batch_provider_1", [first[0].ItemId], now, Ct);

        await Store.ReleaseLeasesAsync(Ct);
        var again = await Store.ClaimNativeAsync("m", "batch_nat", 10, now, now.AddHours(25), Ct);

        Assert.Equal([1, 1], first.Select(i => i.Attempt));
        // The item in the open job keeps its attempt; the one that was only leased has used one.
        Assert.Equal([1, 2], again.OrderBy(i => i.Line).Select(i => i.Attempt));
    }

    [Fact]
    public async Task EachMode_StartsItsItemsInItsTier_AndTheDispatcherClaimsRealtimeAndFlex()
    {
        var now = Time.GetUtcNow();
        await CreateNativeOrRealtimeAsync("batch_flex", BatchMode.Flex);
        await CreateNativeOrRealtimeAsync("batch_auto", BatchMode.Auto);

        var flex = await Store.ClaimAsync("m", null, 10, now, now.AddMinutes(1), Ct);
        Assert.Equal(["batch_flex", "batch_flex"], flex.Select(i => i.BatchId));
        Assert.All(flex, item => Assert.Equal(ItemTier.Flex, item.Tier));
        Assert.Equal([new OpenItems("m", ItemTier.Native, 2)], await Store.ListOpenItemsAsync("batch_auto", Ct));
    }

    [Fact]
    public async Task ACutOver_MovesWhatIsQueued_Once_AndALeasedItemMovesWhenReleased()
    {
        var now = Time.GetUtcNow();
        await CreateNativeOrRealtimeAsync("batch_auto", BatchMode.Auto, items: 3);
        var leased = Assert.Single(await Store.ClaimNativeAsync("m", "batch_auto", 1, now, now.AddHours(25), Ct));
        Assert.Equal(2, await Store.MoveTierAsync("batch_auto", "m", [ItemTier.Native], ItemTier.Flex, Ct));
        Assert.Equal(0, await Store.MoveTierAsync("batch_auto", "other", [ItemTier.Native], ItemTier.Flex, Ct));

        await Store.CutOverAsync("batch_auto", now, Ct);
        await Store.CutOverAsync("batch_auto", now.AddMinutes(5), Ct);

        Assert.Equal(now, (await Store.GetBatchAsync("batch_auto", Ct))!.CutOverAt);
        Assert.Equal(
            [new OpenItems("m", ItemTier.Realtime, 2), new OpenItems("m", ItemTier.Native, 1)],
            (await Store.ListOpenItemsAsync("batch_auto", Ct)).OrderBy(o => o.Tier));
        await Store.MoveItemsAsync([leased.ItemId], ItemTier.Realtime, Ct);
        await Store.CommitAsync([new ItemOutcome(leased, OutcomeKind.Released, new AttemptResult())], now, Ct);
        var claimed = await Store.ClaimAsync("m", "batch_auto", 10, now, now.AddMinutes(1), Ct);
        Assert.Equal(3, claimed.Count);
        Assert.All(claimed, item => Assert.Equal(ItemTier.Realtime, item.Tier));
    }

    [Fact]
    public async Task Answers_AreCountedByTheTierThatAnsweredThem()
    {
        var now = Time.GetUtcNow();
        await CreateNativeOrRealtimeAsync("batch_auto", BatchMode.Auto, items: 3);
        var native = await Store.ClaimNativeAsync("m", "batch_auto", 2, now, now.AddHours(25), Ct);
        await Store.MoveTierAsync("batch_auto", null, [ItemTier.Native], ItemTier.Realtime, Ct);
        var realtime = Assert.Single(await Store.ClaimAsync("m", "batch_auto", 10, now, now.AddMinutes(1), Ct));

        await Store.CommitAsync([
            .. native.Select(i => new ItemOutcome(i, OutcomeKind.Succeeded, new AttemptResult { StatusCode = 200, Body = "{}"u8.ToArray(), InputTokens = 10, OutputTokens = 5, CostNanos = 100, SavedNanos = 100 })),
            new ItemOutcome(realtime, OutcomeKind.Succeeded, new AttemptResult { StatusCode = 200, Body = "{}"u8.ToArray(), InputTokens = 10, OutputTokens = 5, CostNanos = 200 }),
        ], now, Ct);

        var batch = (await Store.GetBatchAsync("batch_auto", Ct))!;
        Assert.Equal(new TierTally(2, 200, 0, 0, 200), batch.Tiers);
        Assert.Equal((3, 400), (batch.Succeeded, batch.CostNanos));
        Assert.Equal((1, 200), (batch.Tiers.RealtimeSucceeded(batch), batch.Tiers.RealtimeCostNanos(batch)));
        Assert.Equal(BatchStatus.Completed, batch.Status);
    }

    [Fact]
    public async Task ANewPlan_MovesWhatIsQueuedToTheModesTier_SetsTheDeadline_AndForgetsTheCutOver()
    {
        var now = Time.GetUtcNow();
        await CreateNativeOrRealtimeAsync("batch_auto", BatchMode.Auto, items: 3);
        var leased = Assert.Single(await Store.ClaimNativeAsync("m", "batch_auto", 1, now, now.AddHours(25), Ct));
        await Store.CutOverAsync("batch_auto", now, Ct);

        await Store.SetPlanAsync("batch_auto", BatchMode.Flex, now.AddHours(6), Ct);

        var batch = (await Store.GetBatchAsync("batch_auto", Ct))!;
        Assert.Equal((BatchMode.Flex, now.AddHours(6), (DateTimeOffset?)null), (batch.Mode, batch.ExpiresAt, batch.CutOverAt));
        Assert.Equal(
            [new OpenItems("m", ItemTier.Native, 1), new OpenItems("m", ItemTier.Flex, 2)],
            (await Store.ListOpenItemsAsync("batch_auto", Ct)).OrderBy(o => o.Tier));
        Assert.Equal(ItemTier.Native, leased.Tier);

        await Store.SetPlanAsync("batch_auto", BatchMode.Realtime, null, Ct);
        Assert.Null((await Store.GetBatchAsync("batch_auto", Ct))!.ExpiresAt);
        Assert.Equal(2, (await Store.ClaimAsync("m", "batch_auto", 10, now, now.AddMinutes(1), Ct)).Count(i => i.Tier == ItemTier.Realtime));
    }

    [Fact]
    public async Task AnEditedInput_KeepsTheAnswersOfItsUnchangedRequests_AtNoCost_AndCountsWhatItDropped()
    {
        var now = Time.GetUtcNow();
        await CreateAcceptedAsync("batch_old", ("a", """{"model":"m","n":1}"""), ("b", """{"model":"m","n":2}"""), ("c", """{"model":"m","n":3}"""));
        var old = await Store.ClaimAsync("m", "batch_old", 10, now, now.AddMinutes(1), Ct);
        await Store.CommitAsync([
            Success(old.Single(i => i.CustomId == "a"), input: 100, output: 20),
            Success(old.Single(i => i.CustomId == "b")),
            new ItemOutcome(old.Single(i => i.CustomId == "c"), OutcomeKind.Failed, new AttemptResult { StatusCode = 400, Body = "{}"u8.ToArray() }),
        ], now, Ct);
        var paid = (await Store.GetResultAsync("batch_old", "a", Ct))!.Result!.CostNanos;
        await CreateAcceptedAsync("batch_new", ("a", """{"model":"m","n":1}"""), ("b", """{"model":"m","n":20}"""), ("d", """{"model":"m","n":4}"""));

        var carried = await Store.CarryOverAsync("batch_old", "batch_new", now, Ct);

        Assert.Equal(new CarriedOver(1, 1), carried);
        var batch = (await Store.GetBatchAsync("batch_new", Ct))!;
        Assert.Equal((1L, 1L, paid, 100L, 20L, 0L), (batch.Succeeded, batch.Cached, batch.CacheSavedNanos, batch.InputTokens, batch.OutputTokens, batch.CostNanos));
        var kept = (await Store.GetResultAsync("batch_new", "a", Ct))!;
        Assert.Equal((ItemState.Succeeded, true, 0L, 200), (kept.State, kept.Result!.Cached, kept.Result.CostNanos, kept.Result.StatusCode!.Value));
        var sent = await Store.ClaimAsync("m", "batch_new", 10, now, now.AddMinutes(1), Ct);
        Assert.Equal(["b", "d"], sent.Select(i => i.CustomId).Order());
        Assert.False((await Store.GetResultAsync("batch_old", "a", Ct))!.Result!.Cached);
    }

    private async Task CreateAcceptedAsync(string id, params (string CustomId, string Body)[] items)
    {
        await Store.CreateBatchAsync(new NewBatch(id, "in.jsonl", BatchEndpoints.ChatCompletions), Ct);
        await Store.AddItemsAsync(id, [.. items.Select((item, i) => new ImportItem(i + 1, item.CustomId, "m", Encoding.UTF8.GetBytes(item.Body)))], Ct);
        await Store.AcceptBatchAsync(id, new AcceptedInput(InputFormat.OpenAI, BatchEndpoints.ChatCompletions, items.Length, null, 20), Ct);
    }

    private async Task CreateNativeOrRealtimeAsync(string id, BatchMode mode, int items = 2)
    {
        await Store.CreateBatchAsync(new NewBatch(id, null, BatchEndpoints.ChatCompletions) { Mode = mode }, Ct);
        await Store.AddItemsAsync(id, [.. Enumerable.Range(1, items).Select(line =>
            new ImportItem(line, "c" + line, "m", Encoding.UTF8.GetBytes("""{"model":"m"}""")))], Ct);
        await Store.AcceptBatchAsync(id, new AcceptedInput(InputFormat.OpenAI, BatchEndpoints.ChatCompletions, items, null, 20), Ct);
    }
}
