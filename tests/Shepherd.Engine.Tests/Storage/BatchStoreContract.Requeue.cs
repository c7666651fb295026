using System.Text;
using Shepherd.Engine.Model;
using Shepherd.Engine.Storage;
using Shepherd.Engine.Upstreams;

namespace Shepherd.Engine.Tests.Storage;

public abstract partial class BatchStoreContract
{
    [Fact]
    public async Task RequeueFailed_QueuesFailedAndExpiredItemsAsNeverSent_KeepingEverySuccessAndItsCost()
    {
        var id = await CreateAcceptedBatchAsync(6, window: TimeSpan.FromMinutes(10));
        var claimed = await ClaimAsync(id, 4);
        var failed = new AttemptResult { StatusCode = 500, Body = "{}"u8.ToArray(), InputTokens = 3, CostNanos = 1200 };
        var overBudget = new AttemptResult { ErrorCode = FailureCodes.BudgetExceeded, ErrorMessage = "not sent" };
        await Store.CommitAsync(
            [Success(claimed[0]), Success(claimed[1]), new ItemOutcome(claimed[2], OutcomeKind.Failed, failed), new ItemOutcome(claimed[3], OutcomeKind.Failed, overBudget)],
            Time.GetUtcNow(), Ct);
        Time.Advance(TimeSpan.FromMinutes(11));
        await Store.ExpireBatchAsync(id, Time.GetUtcNow(), Ct);
        var ended = await Store.GetBatchAsync(id, Ct);
        Assert.Equal((BatchStatus.Expired, 2L, 2L, 2L, 1L), (ended!.Status, ended.Succeeded, ended.Failed, ended.Expired, ended.BudgetExceeded));

        var requeued = await Store.RequeueFailedAsync(id, Time.GetUtcNow().AddHours(1), Ct);

        Assert.Equal(4, requeued);
        var batch = await Store.GetBatchAsync(id, Ct);
        Assert.Equal((BatchStatus.InProgress, 2L, 0L, 0L, 0L), (batch!.Status, batch.Succeeded, batch.Failed, batch.Expired, batch.BudgetExceeded));
        Assert.Equal((20L, 10L, 2L * ((10 * 400) + (5 * 1600))), (batch.InputTokens, batch.OutputTokens, batch.CostNanos));
        Assert.Null(batch.ExpiredAt);
        Assert.Equal(Time.GetUtcNow().AddHours(1), batch.ExpiresAt);
        Assert.Contains(id, (await Store.ListActiveBatchesAsync(Ct)).Select(b => b.Id));
        var again = await ClaimAsync(id, 10);
        Assert.Equal([3L, 4L, 5L, 6L], again.Select(item => item.Line));
        Assert.All(again, item => Assert.Equal(1, item.Attempt));
        var results = await Store.ReadResultsAsync(id, 0, Ct).ToListAsync(Ct);
        Assert.Equal([ItemState.Succeeded, ItemState.Succeeded, ItemState.Leased, ItemState.Leased, ItemState.Leased, ItemState.Leased], results.Select(r => r.State));
        Assert.Equal("{\"ok\":1}", Encoding.UTF8.GetString(results[0].Result!.Body!));

        await Store.CommitAsync([.. again.Select(item => Success(item))], Time.GetUtcNow(), Ct);
        var completed = await Store.GetBatchAsync(id, Ct);
        Assert.Equal((BatchStatus.Completed, 6L, 0L), (completed!.Status, completed.Succeeded, completed.Failed));
        Assert.Equal(6L * ((10 * 400) + (5 * 1600)), completed.CostNanos);
    }

    [Fact]
    public async Task RequeueFailed_OfABatchWithoutFailures_ChangesNothing()
    {
        var id = await CreateAcceptedBatchAsync(2);
        await Store.CommitAsync([.. (await ClaimAsync(id, 2)).Select(item => Success(item))], Time.GetUtcNow(), Ct);

        Assert.Equal(0, await Store.RequeueFailedAsync(id, null, Ct));
        Assert.Equal(BatchStatus.Completed, (await Store.GetBatchAsync(id, Ct))!.Status);
    }

    [Fact]
    public async Task ABudget_CanBeSetAndRemoved()
    {
        var id = await CreateAcceptedBatchAsync(1);

        await Store.SetBudgetAsync(id, 2_500_000_000, Ct);
        Assert.Equal(2_500_000_000, (await Store.GetBatchAsync(id, Ct))!.BudgetNanos);
        await Store.SetBudgetAsync(id, null, Ct);
        Assert.Null((await Store.GetBatchAsync(id, Ct))!.BudgetNanos);
    }

    [Fact]
    public async Task HowABatchUsesTheCache_IsKept_AndCanBeChanged()
    {
        await Store.CreateBatchAsync(new NewBatch("batch_off", null) { Cache = CacheUse.Off }, Ct);
        var id = await CreateAcceptedBatchAsync(1);

        Assert.Equal(CacheUse.Off, (await Store.GetBatchAsync("batch_off", Ct))!.Cache);
        Assert.Equal(CacheUse.All, (await Store.GetBatchAsync(id, Ct))!.Cache);
        await Store.SetCacheUseAsync(id, CacheUse.Unsampled, Ct);
        Assert.Equal(CacheUse.Unsampled, (await Store.GetBatchAsync(id, Ct))!.Cache);
        Assert.Equal(CacheUse.Unsampled, Assert.Single(await Store.ListActiveBatchesAsync(Ct), b => b.Id == id).Cache);
    }

    [Fact]
    public async Task TheRealtimeLedger_AddsUpPerTenantAndDay()
    {
        var today = new DateOnly(2026, 12, 7);

        await Store.AddSpendAsync([new TenantSpend("acme", today, 2, 300), new TenantSpend("", today, 1, 5)], Ct);
        await Store.AddSpendAsync([new TenantSpend("acme", today, 1, 50), new TenantSpend("acme", today.AddDays(1), 4, 1_000)], Ct);

        Assert.Equal(
            [new TenantSpend("", today, 1, 5), new TenantSpend("acme", today, 3, 350)],
            (await Store.ListSpendAsync(today, Ct)).OrderBy(s => s.Owner, StringComparer.Ordinal));
        Assert.Equal([new TenantSpend("acme", today.AddDays(1), 4, 1_000)], await Store.ListSpendAsync(today.AddDays(1), Ct));
        Assert.Empty(await Store.ListSpendAsync(today.AddDays(2), Ct));
    }
}
