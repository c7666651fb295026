using Microsoft.Extensions.Logging.Abstractions;
using Shepherd.Engine.Dispatch;
using Shepherd.Engine.Model;
using Shepherd.Engine.Native;
using Shepherd.Engine.Pricing;
using Shepherd.Engine.Tests.Dispatch;
using Shepherd.Engine.Upstreams;
using Shepherd.Simulator;

namespace Shepherd.Engine.Tests.Native;

/// <summary>
/// The planner of auto batches on a fake clock, against the simulator's own batch API: native
/// first, resubmitted where lines expire, and at the last safe moment before the deadline what is
/// still open goes in realtime, every answer kept once.
/// </summary>
public sealed class PlannerTests : DispatchTestBase
{
    private static readonly UpstreamOptions Upstream = new()
    {
        Name = "sim",
        BaseUrl = new Uri("http://sim.test/v1"),
        BatchApi = true,
        Limits = new LaneLimits { RequestsPerMinute = 600 },
    };

    private static readonly NativeBatchOptions Native = new() { PollInterval = TimeSpan.FromMinutes(1), CancelGrace = TimeSpan.FromMinutes(2) };

    private (NativeBatchRunner Runner, Dispatcher Dispatcher, SimulatedProvider Provider) Build(SimulatorOptions simulator, int seed = 7, UpstreamOptions? upstream = null)
    {
        upstream ??= Upstream;
        var provider = new SimulatedProvider(simulator, Time, new Random(seed));
        var handler = new SimulatorHandler(provider);
        var dispatcher = CreateDispatcher(handler, upstream: upstream);
        var runner = new NativeBatchRunner(
            Store, [new UpstreamClient(new HttpClient(handler), upstream.Validated(), Time)], new HttpClient(handler), Native, new DispatchOptions(),
            Time, PriceTable.BuiltIn, new TokenEstimator(), NullLogger<NativeBatchRunner>.Instance)
        {
            RealtimeRate = dispatcher.RequestsPerSecond,
            Holds = dispatcher.Holds,
        };
        return (runner, dispatcher, provider);
    }

    /// <summary>Looks at the provider each poll interval until <paramref name="until"/>.</summary>
    private async Task RunNativeUntilAsync(NativeBatchRunner runner, DateTimeOffset until)
    {
        while (Time.GetUtcNow() < until)
        {
            await runner.RunOnceAsync(Ct);
            Time.Advance(Native.PollInterval);
        }

        await runner.RunOnceAsync(Ct);
    }

    [Fact]
    public async Task ASlowBatchApi_IsCutOverBeforeTheDeadline_KeepingWhatItAnswered_AndRealtimeSendsTheRest()
    {
        var (runner, dispatcher, provider) = Build(new SimulatorOptions { BatchLatency = TimeSpan.FromHours(3) });
        var started = Time.GetUtcNow();
        var (batchId, _) = await ImportAsync(200, mode: BatchMode.Auto, window: TimeSpan.FromHours(1));

        // 200 requests at 600 rpm need 20 s of realtime; the margin keeps 5 s, two looks and the grace.
        var cutOver = started + TimeSpan.FromHours(1) - TimeSpan.FromSeconds(25) - (2 * Native.PollInterval) - Native.CancelGrace;
        await RunNativeUntilAsync(runner, cutOver - TimeSpan.FromMinutes(2));
        Assert.Null((await Store.GetBatchAsync(batchId, Ct))!.CutOverAt);
        Assert.Equal(1, provider.Stats().Batch.Jobs);

        await RunNativeUntilAsync(runner, cutOver + TimeSpan.FromMinutes(1));
        var batch = (await Store.GetBatchAsync(batchId, Ct))!;
        Assert.InRange(batch.CutOverAt!.Value, cutOver, cutOver + Native.PollInterval);
        var kept = batch.Tiers.NativeSucceeded;
        // The job ran for about 55 of its 180 minutes: about that share of its lines were answered, and kept.
        Assert.InRange(kept, 30, 90);

        await RunToCompletionAsync(dispatcher, batchId);

        batch = (await Store.GetBatchAsync(batchId, Ct))!;
        Assert.Equal(BatchStatus.Completed, batch.Status);
        Assert.True(batch.CompletedAt < batch.ExpiresAt);
        Assert.Equal((200L, kept, 200 - kept), (batch.Succeeded, batch.Tiers.NativeSucceeded, batch.Tiers.RealtimeSucceeded(batch)));
        var stats = provider.Stats();
        Assert.Equal(kept, stats.Batch.LinesSucceeded);
        Assert.Equal(200 - kept, stats.Batch.LinesCancelled);
        Assert.Equal(0, stats.Duplicates);
        Assert.Equal(1, stats.Batch.Jobs);
        Assert.True(batch.Tiers.SavedNanos > 0);
        // At half price, a native answer saves what it costs (to rounding).
        Assert.InRange(batch.Tiers.SavedNanos - batch.Tiers.NativeCostNanos, -kept, kept);
    }

    [Fact]
    public async Task LinesABatchJobLeavesToExpire_GoIntoTheNextJob_WhileTheDeadlineLeavesRoom()
    {
        var (runner, _, provider) = Build(new SimulatorOptions { BatchLatency = TimeSpan.FromMinutes(10), BatchExpireShare = 0.1 });
        var (batchId, _) = await ImportAsync(300, mode: BatchMode.Auto, window: TimeSpan.FromHours(24));

        await RunNativeUntilAsync(runner, Time.GetUtcNow() + TimeSpan.FromHours(2));

        var batch = (await Store.GetBatchAsync(batchId, Ct))!;
        Assert.Equal(BatchStatus.Completed, batch.Status);
        Assert.Null(batch.CutOverAt);
        Assert.Equal((300L, 300L), (batch.Succeeded, batch.Tiers.NativeSucceeded));
        var stats = provider.Stats();
        Assert.True(stats.Batch.Jobs >= 2, $"{stats.Batch.Jobs} jobs");
        Assert.True(stats.Batch.LinesExpired > 0);
        Assert.Equal(300, stats.Batch.LinesSucceeded);
        Assert.Equal(0, stats.Duplicates);
        Assert.InRange(batch.CostNanos - PriceTable.BuiltIn.Price("gpt-4.1-mini", batch.InputTokens, batch.OutputTokens, batch: true).Nanos, -300, 300);
    }

    [Fact]
    public async Task ACancelThatDoesNotLand_GivesItsRequestsToRealtimeAfterTheGrace_SoTheDeadlineHolds()
    {
        var (runner, dispatcher, provider) = Build(new SimulatorOptions { BatchLatency = TimeSpan.FromHours(3), BatchCancelLatency = TimeSpan.FromHours(2) });
        var (batchId, _) = await ImportAsync(100, mode: BatchMode.Auto, window: TimeSpan.FromHours(1));

        await RunNativeUntilAsync(runner, Time.GetUtcNow() + TimeSpan.FromMinutes(58));
        await RunToCompletionAsync(dispatcher, batchId);

        var batch = (await Store.GetBatchAsync(batchId, Ct))!;
        Assert.Equal(BatchStatus.Completed, batch.Status);
        Assert.True(batch.CompletedAt < batch.ExpiresAt);
        Assert.Equal((100L, 0L, 100L), (batch.Succeeded, batch.Tiers.NativeSucceeded, batch.Tiers.RealtimeSucceeded(batch)));

        // The provider's job ends later; what it answered before the cancel is counted as paid twice, and changes no result.
        Time.Advance(TimeSpan.FromHours(3));
        await runner.RunOnceAsync(Ct);
        Assert.Equal(provider.Stats().Batch.LinesSucceeded, runner.PaidTwice);
        Assert.True(runner.PaidTwice > 0);
        Assert.Equal(100L, (await Store.GetBatchAsync(batchId, Ct))!.Succeeded);
    }

    [Fact]
    public async Task ABudget_SplitsNativeJobsToFit_AndWorkItCannotPayForEndsBudgetExceeded()
    {
        var (runner, _, provider) = Build(new SimulatorOptions { BatchLatency = TimeSpan.FromMinutes(10) });
        var requests = Testing.BatchFiles.OpenAIChat(40, maxTokens: 1000);
        var worst = PriceTable.BuiltIn.Price("gpt-4.1-mini", new TokenEstimator().Estimate("gpt-4.1-mini", System.Text.Encoding.UTF8.GetBytes(requests[0].Body)).PromptTokens, 1000, batch: true).Nanos;
        // Room for the worst case of 15 requests at a time: the answers cost far less, so all 40 fit in turn.
        var (batchId, _) = await ImportAsync(40, mode: BatchMode.Native, requests: requests, budgetNanos: (worst * 15) + (worst / 2));

        await runner.RunOnceAsync(Ct);
        Assert.Equal(1, provider.Stats().Batch.Jobs);
        await RunNativeUntilAsync(runner, Time.GetUtcNow() + TimeSpan.FromHours(1));

        var batch = (await Store.GetBatchAsync(batchId, Ct))!;
        Assert.Equal((BatchStatus.Completed, 40L), (batch.Status, batch.Succeeded));
        Assert.True(provider.Stats().Batch.Jobs >= 3, $"{provider.Stats().Batch.Jobs} jobs");
        Assert.True(batch.CostNanos <= batch.BudgetNanos);

        // A budget below one request's worst case pays for nothing: each request ends budget_exceeded, none is handed over.
        var (poor, _) = await ImportAsync(3, prefix: "poor-", mode: BatchMode.Native, requests: Testing.BatchFiles.OpenAIChat(3, maxTokens: 1000, idPrefix: "poor-"), budgetNanos: worst / 2);
        await RunNativeUntilAsync(runner, Time.GetUtcNow() + TimeSpan.FromMinutes(2));
        var refused = (await Store.GetBatchAsync(poor, Ct))!;
        Assert.Equal((BatchStatus.Completed, 3L, 3L), (refused.Status, refused.Failed, refused.BudgetExceeded));
    }

    [Fact]
    public async Task WhatNativeJobsHold_KeepsRealtimeRequestsOfTheSameBatchWaiting_UntilTheyGiveItBack()
    {
        var (_, dispatcher, _) = Build(new SimulatorOptions());
        var requests = Testing.BatchFiles.OpenAIChat(1, maxTokens: 1000);
        var most = PriceTable.BuiltIn.Price("gpt-4.1-mini", new TokenEstimator().Estimate("gpt-4.1-mini", System.Text.Encoding.UTF8.GetBytes(requests[0].Body)).PromptTokens, 1000).Nanos;
        var (batchId, _) = await ImportAsync(1, requests: requests, budgetNanos: most + 1);
        var started = Time.GetUtcNow();
        // An open native job of the batch holds all but a nanodollar of the budget, for five seconds.
        dispatcher.Holds.HoldNative(batchId, most);
        using var release = Time.CreateTimer(_ => dispatcher.Holds.HoldNative(batchId, 0), null, TimeSpan.FromSeconds(5), Timeout.InfiniteTimeSpan);

        await RunToCompletionAsync(dispatcher, batchId);

        var batch = (await Store.GetBatchAsync(batchId, Ct))!;
        Assert.Equal((1L, 0L), (batch.Succeeded, batch.BudgetExceeded));
        Assert.True(await TookAsync(batchId, started) >= TimeSpan.FromSeconds(5));
    }

    [Fact]
    public async Task WhatTheDispatcherHoldsInFlight_KeepsANativeJobFromTakingTheSameBudget()
    {
        var (runner, dispatcher, provider) = Build(new SimulatorOptions { BatchLatency = TimeSpan.FromMinutes(10) });
        var requests = Testing.BatchFiles.OpenAIChat(2, maxTokens: 1000);
        var worst = PriceTable.BuiltIn.Price("gpt-4.1-mini", new TokenEstimator().Estimate("gpt-4.1-mini", System.Text.Encoding.UTF8.GetBytes(requests[0].Body)).PromptTokens, 1000, batch: true).Nanos;
        var (batchId, _) = await ImportAsync(2, mode: BatchMode.Native, requests: requests, budgetNanos: 3 * worst);
        dispatcher.Holds.HoldRealtime(batchId, 2 * worst);

        await runner.RunOnceAsync(Ct);
        Assert.Equal(1, provider.Stats().Batch.Jobs);
        Assert.Equal(worst, dispatcher.Holds.Native(batchId));

        dispatcher.Holds.HoldRealtime(batchId, 0);
        await RunNativeUntilAsync(runner, Time.GetUtcNow() + TimeSpan.FromMinutes(30));
        var batch = (await Store.GetBatchAsync(batchId, Ct))!;
        Assert.Equal((BatchStatus.Completed, 2L), (batch.Status, batch.Succeeded));
        Assert.Equal(2, provider.Stats().Batch.Jobs);
        Assert.Equal(0, dispatcher.Holds.Native(batchId));
        Assert.Equal(batch.CostNanos, dispatcher.Holds.NativeSpent(batchId));
    }

    [Fact]
    public async Task ATokenLimitedLane_MakesTheCutOverComeSooner_ByTheSizeOfTheRequests()
    {
        var upstream = new UpstreamOptions { Name = "sim", BaseUrl = new Uri("http://sim.test/v1"), BatchApi = true, Limits = new LaneLimits { TokensPerMinute = 6000 } };
        var (runner, dispatcher, _) = Build(new SimulatorOptions { BatchLatency = TimeSpan.FromHours(3) }, upstream: upstream);
        var requests = Testing.BatchFiles.OpenAIChat(200, maxTokens: 50);
        var size = requests.Average(r => new TokenEstimator().Estimate("gpt-4.1-mini", System.Text.Encoding.UTF8.GetBytes(r.Body)).PromptTokens + 50.0);
        var started = Time.GetUtcNow();
        var (batchId, _) = await ImportAsync(200, mode: BatchMode.Auto, window: TimeSpan.FromHours(1), requests: requests);

        // The dispatcher's lanes for the batch's model, with their token limit, as a running host has them.
        using (var stop = new CancellationTokenSource())
        {
            var running = dispatcher.RunAsync(null, stop.Token);
            await Testing.Poll.UntilAsync(() => Task.FromResult(dispatcher.Lanes.Count), count => count > 0, TimeSpan.FromSeconds(10), Ct);
            await stop.CancelAsync();
            await running;
        }

        // 200 requests of about 70 tokens at 100 tokens a second need some 140 s of realtime, not the 20 s ten a second would.
        var need = TimeSpan.FromSeconds(200 * size / 100);
        var cutOver = started + TimeSpan.FromHours(1) - need - (need * 0.25) - (2 * Native.PollInterval) - Native.CancelGrace;
        await RunNativeUntilAsync(runner, cutOver - TimeSpan.FromMinutes(1));
        Assert.Null((await Store.GetBatchAsync(batchId, Ct))!.CutOverAt);
        await RunNativeUntilAsync(runner, cutOver + TimeSpan.FromMinutes(1));
        Assert.InRange((await Store.GetBatchAsync(batchId, Ct))!.CutOverAt!.Value, cutOver - TimeSpan.FromSeconds(5), cutOver + Native.PollInterval);
    }
}
