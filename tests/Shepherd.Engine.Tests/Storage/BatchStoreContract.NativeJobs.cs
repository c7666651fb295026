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
        Assert.Null(await Store.NextDueAsync("m", null, Ct));
        Assert.NotNull(await Store.NextDueAsync("m", "batch_nat", Ct));

        var native = await Store.ClaimAsync("m", "batch_nat", 10, now, now.AddHours(25), Ct);
        Assert.Equal(2, native.Count);
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
        var first = await Store.ClaimAsync("m", "batch_nat", 10, now, now.AddHours(25), Ct);
        await Store.AddNativeJobAsync("batch_nat", "openai", "batch_provider_1", [first[0].ItemId], now, Ct);

        await Store.ReleaseLeasesAsync(Ct);
        var again = await Store.ClaimAsync("m", "batch_nat", 10, now, now.AddHours(25), Ct);

        Assert.Equal([1, 1], first.Select(i => i.Attempt));
        // The item in the open job keeps its attempt; the one that was only leased has used one.
        Assert.Equal([1, 2], again.OrderBy(i => i.Line).Select(i => i.Attempt));
    }

    private async Task CreateNativeOrRealtimeAsync(string id, BatchMode mode)
    {
        await Store.CreateBatchAsync(new NewBatch(id, null, BatchEndpoints.ChatCompletions) { Mode = mode }, Ct);
        await Store.AddItemsAsync(id, [
            new ImportItem(1, "a", "m", Encoding.UTF8.GetBytes("""{"model":"m"}""")),
            new ImportItem(2, "b", "m", Encoding.UTF8.GetBytes("""{"model":"m"}""")),
        ], Ct);
        await Store.AcceptBatchAsync(id, new AcceptedInput(InputFormat.OpenAI, BatchEndpoints.ChatCompletions, 2, null, 20), Ct);
    }
}
