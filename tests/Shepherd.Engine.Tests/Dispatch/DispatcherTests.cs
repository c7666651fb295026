using System.Net;
using System.Text;
using System.Text.Json;
using Shepherd.Engine.Dispatch;
using Shepherd.Engine.Model;
using Shepherd.Engine.Storage;
using Shepherd.Engine.Upstreams;
using Shepherd.Simulator;
using Shepherd.Testing;

namespace Shepherd.Engine.Tests.Dispatch;

public sealed class DispatcherTests : DispatchTestBase
{
    [Fact]
    public async Task EveryItem_IsSentOnce_WithItsBodyUnchanged_AndTheBatchCompletes()
    {
        var (batchId, requests) = await ImportAsync(100);
        var simulator = Simulators.Create(time: Time);

        await RunToCompletionAsync(CreateDispatcher(new SimulatorHandler(simulator)), batchId);

        var received = simulator.ReceivedCounts();
        Assert.All(requests, r => Assert.Equal(1, received.GetValueOrDefault(r.Key)));
        Assert.Equal(100, received.Count);
        var batch = await Store.GetBatchAsync(batchId, Ct);
        Assert.Equal((BatchStatus.Completed, 100L, 0L), (batch!.Status, batch.Succeeded, batch.Failed));
        var results = await ResultsAsync(batchId);
        Assert.Equal(batch.InputTokens, results.Sum(r => r.Result!.InputTokens));
        Assert.True(batch.OutputTokens > 0);
        Assert.All(results, r => Assert.Equal("chat.completion", JsonDocument.Parse(r.Result!.Body!).RootElement.GetProperty("object").GetString()));
    }

    [Fact]
    public async Task EveryAnswer_IsPricedOnce_ThroughRetries_AndTheBatchCostIsTheirSum()
    {
        var (batchId, _) = await ImportAsync(60);
        var simulator = Simulators.Create(new SimulatorOptions { Error500Rate = 0.2, ResetRate = 0.1 }, Time, seed: 5);
        var dispatcher = CreateDispatcher(new SimulatorHandler(simulator), new DispatchOptions { Concurrency = 8, MaxAttempts = 30 });

        await RunToCompletionAsync(dispatcher, batchId);

        var batch = await Store.GetBatchAsync(batchId, Ct);
        var results = await ResultsAsync(batchId);
        Assert.True(dispatcher.Counters.Retries > 0);
        // gpt-4.1-mini: $0.40 and $1.60 per million tokens, 400 and 1,600 billionths of a dollar per token.
        Assert.All(results, r => Assert.Equal((r.Result!.InputTokens * 400L) + (r.Result.OutputTokens * 1600L), r.Result.CostNanos));
        Assert.Equal(results.Sum(r => r.Result!.CostNanos), batch!.CostNanos);
        Assert.Equal((batch.InputTokens * 400) + (batch.OutputTokens * 1600), batch.CostNanos);
        Assert.Equal(0, batch.Unpriced);
    }

    [Fact]
    public async Task ABudget_StopsDispatchUnderConcurrency50_OvershootingByNoMoreThanTheRequestsInFlight()
    {
        // gpt-4.1-mini with max_tokens 50: each request may cost up to (prompt × 400) + (50 × 1,600) billionths of a dollar.
        var requests = BatchFiles.OpenAIChat(300, maxTokens: 50);
        var mostPerRequest = requests.Max(r => (new TokenEstimator().Estimate("gpt-4.1-mini", Encoding.UTF8.GetBytes(JsonDocument.Parse(r.Line).RootElement.GetProperty("body").GetRawText())).PromptTokens * 400L) + (50 * 1600L));
        var budget = 100 * mostPerRequest;
        var (batchId, _) = await ImportAsync(300, requests: requests, budgetNanos: budget);
        var simulator = Simulators.Create(new SimulatorOptions { Latency = TimeSpan.FromMilliseconds(200) }, Time);

        await RunToCompletionAsync(CreateDispatcher(new SimulatorHandler(simulator), new DispatchOptions { Concurrency = 50, InitialConcurrency = 50 }), batchId, () => simulator.WaitingOnTheClock);

        var batch = await Store.GetBatchAsync(batchId, Ct);
        var results = await ResultsAsync(batchId);
        Assert.Equal(BatchStatus.Completed, batch!.Status);
        Assert.True(simulator.Stats().PeakInFlight >= 40, $"only {simulator.Stats().PeakInFlight} requests were ever in flight together");
        Assert.InRange(batch.CostNanos, budget - (50 * mostPerRequest), budget + (50 * mostPerRequest));
        Assert.True(batch.CostNanos <= budget, $"spent {batch.CostNanos} of a budget of {budget}");
        Assert.Equal(300 - batch.Succeeded, batch.BudgetExceeded);
        Assert.True(batch.BudgetExceeded > 0);
        Assert.Equal(batch.Succeeded, simulator.Stats().Requests);
        Assert.All(results.Where(r => r.State == ItemState.Failed), r => Assert.Equal("budget_exceeded", r.Result!.ErrorCode));
    }

    [Fact]
    public async Task ABudgetThatCoversTheRealCost_CompletesEveryRequest_ThoughTheirWorstCasesDoNotFitTogether()
    {
        // max_tokens 1000 makes the worst case of each request many times its real cost.
        var requests = BatchFiles.OpenAIChat(200, model: "gpt-4o-mini", maxTokens: 1000);
        var simulator = Simulators.Create(new SimulatorOptions { Latency = TimeSpan.FromMilliseconds(200) }, Time);
        var (free, _) = await ImportAsync(200, prefix: "free-", requests: requests);
        await RunToCompletionAsync(CreateDispatcher(new SimulatorHandler(simulator)), free, () => simulator.WaitingOnTheClock);
        var realCost = (await Store.GetBatchAsync(free, Ct))!.CostNanos;
        var mostPerRequest = requests.Max(r => (new TokenEstimator().Estimate("gpt-4o-mini", Encoding.UTF8.GetBytes(JsonDocument.Parse(r.Line).RootElement.GetProperty("body").GetRawText())).PromptTokens * 150L) + (1000 * 600L));
        var budget = realCost + mostPerRequest;
        Assert.True(budget < 20 * mostPerRequest, "the budget must not hold the worst cases of all requests in flight together");

        var (batchId, _) = await ImportAsync(200, prefix: "budget-", requests: requests, budgetNanos: budget);
        var before = simulator.Stats().Requests;
        await RunToCompletionAsync(CreateDispatcher(new SimulatorHandler(simulator), new DispatchOptions { Concurrency = 50, InitialConcurrency = 50 }), batchId, () => simulator.WaitingOnTheClock);

        var batch = await Store.GetBatchAsync(batchId, Ct);
        Assert.Equal((200L, 0L, 0L), (batch!.Succeeded, batch.Failed, batch.BudgetExceeded));
        Assert.Equal(realCost, batch.CostNanos);
        Assert.True(batch.CostNanos <= budget);
        Assert.Equal(200, simulator.Stats().Requests - before);
    }

    [Fact]
    public async Task AnswersOfAnUnknownModel_CostNothing_AndAreCounted()
    {
        var (batchId, _) = await ImportAsync(5, requests: BatchFiles.OpenAIChat(5, model: "mystery-model-9"));

        await RunToCompletionAsync(CreateDispatcher(new SimulatorHandler(Simulators.Create(time: Time))), batchId);

        var batch = await Store.GetBatchAsync(batchId, Ct);
        Assert.Equal((0L, 5L), (batch!.CostNanos, batch.Unpriced));
    }

    [Fact]
    public async Task TransientFaults_AreRetried_UntilEveryItemSucceeds()
    {
        var (batchId, requests) = await ImportAsync(60);
        var simulator = Simulators.Create(new SimulatorOptions { Error500Rate = 0.15, Error503Rate = 0.15, Error529Rate = 0.1, ResetRate = 0.1 }, Time, seed: 11);
        var dispatcher = CreateDispatcher(new SimulatorHandler(simulator), new DispatchOptions { Concurrency = 8, MaxAttempts = 30 });

        await RunToCompletionAsync(dispatcher, batchId);

        var batch = await Store.GetBatchAsync(batchId, Ct);
        Assert.Equal((60L, 0L), (batch!.Succeeded, batch.Failed));
        Assert.True(dispatcher.Counters.Retries > 0);
        Assert.Equal(60 + dispatcher.Counters.Retries + dispatcher.Counters.Requeued, dispatcher.Counters.Attempts);
        Assert.Equal(dispatcher.Counters.Attempts, simulator.Stats().Requests);
        Assert.All(requests, r => Assert.True(simulator.ReceivedCounts()[r.Key] >= 1));
    }

    [Fact]
    public async Task PermanentError_FailsTheItemAtOnce_KeepingTheProvidersAnswer()
    {
        var (batchId, _) = await ImportAsync(3);
        var simulator = Simulators.Create(new SimulatorOptions { ContextTokens = 1 }, Time);
        var dispatcher = CreateDispatcher(new SimulatorHandler(simulator));

        await RunToCompletionAsync(dispatcher, batchId);

        Assert.Equal(3, dispatcher.Counters.Attempts);
        var results = await ResultsAsync(batchId);
        Assert.All(results, r =>
        {
            Assert.Equal(ItemState.Failed, r.State);
            Assert.Equal(400, r.Result!.StatusCode);
            Assert.Contains("context_length_exceeded", Encoding.UTF8.GetString(r.Result.Body!), StringComparison.Ordinal);
        });
    }

    [Fact]
    public async Task WhenAttemptsRunOut_TheLastErrorIsTheResult()
    {
        var (batchId, _) = await ImportAsync(1);
        var handler = new ScriptedHandler(ScriptedHandler.Json(HttpStatusCode.ServiceUnavailable, """{"error":{"message":"busy"}}"""));

        await RunToCompletionAsync(CreateDispatcher(handler, new DispatchOptions { MaxAttempts = 3 }), batchId);

        Assert.Equal(3, handler.Received.Count);
        var result = Assert.Single(await ResultsAsync(batchId));
        Assert.Equal((ItemState.Failed, (int?)503), (result.State, result.Result!.StatusCode));
    }

    [Fact]
    public async Task AHangingUpstream_TimesOut_AndTheItemIsTriedAgain()
    {
        var (batchId, _) = await ImportAsync(1);
        var hanging = 0L;
        var handler = new ScriptedHandler(
            async (_, cancellationToken) =>
            {
                Interlocked.Increment(ref hanging);
                try
                {
                    await Task.Delay(Timeout.InfiniteTimeSpan, Time, cancellationToken);
                }
                finally
                {
                    Interlocked.Decrement(ref hanging);
                }

                throw new InvalidOperationException("unreachable");
            },
            ScriptedHandler.Json(HttpStatusCode.OK, "{}"));
        var started = Time.GetUtcNow();

        await RunToCompletionAsync(
            CreateDispatcher(handler, upstream: new UpstreamOptions { BaseUrl = new Uri("http://upstream.test/v1"), RequestTimeout = TimeSpan.FromSeconds(30) }),
            batchId,
            () => Interlocked.Read(ref hanging));

        Assert.Equal(2, handler.Received.Count);
        Assert.True(Time.GetUtcNow() - started >= TimeSpan.FromSeconds(30));
        Assert.Equal(ItemState.Succeeded, (await ResultsAsync(batchId)).Single().State);
    }

    [Fact]
    public async Task Stopping_KeepsEveryAnswerReceived_AndARestartFinishesTheRest()
    {
        var (batchId, requests) = await ImportAsync(20);
        var gate = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var answered = 0;
        var handler = new ScriptedHandler(async (_, cancellationToken) =>
        {
            if (Interlocked.Increment(ref answered) > 5)
            {
                await gate.Task.WaitAsync(cancellationToken);
            }

            return await ScriptedHandler.Json(HttpStatusCode.OK, "{}")(null!, cancellationToken);
        });
        var first = CreateDispatcher(handler, new DispatchOptions { Concurrency = 4 });
        using var stop = new CancellationTokenSource();
        var running = first.RunAsync(null, stop.Token);
        await Time.RunUntilAsync(WaitUntilAsync(async () => (await Store.GetBatchAsync(batchId, Ct))!.Succeeded >= 5), TimeSpan.FromMilliseconds(10), () => first.IsQuiet(0));

        await stop.CancelAsync();
        await running;

        var afterStop = await Store.GetBatchAsync(batchId, Ct);
        Assert.Equal(5, afterStop!.Succeeded);
        Assert.Equal(BatchStatus.InProgress, afterStop.Status);
        // Only the requests in flight stay leased; the items claimed ahead but never sent are queued already.
        var inFlight = handler.Received.Count - 5;
        Assert.InRange(inFlight, 1, 4);
        Assert.Equal(inFlight, await Store.ReleaseLeasesAsync(Ct));

        var simulator = Simulators.Create(time: Time);
        await RunToCompletionAsync(CreateDispatcher(new SimulatorHandler(simulator)), batchId);

        Assert.Equal(20, (await Store.GetBatchAsync(batchId, Ct))!.Succeeded);
        Assert.Equal(15, simulator.Stats().Requests);
        Assert.Equal(requests.Select(r => r.CustomId), (await ResultsAsync(batchId)).Select(r => r.CustomId));
    }

    [Fact]
    public async Task SeveralBatches_AreDispatchedTogether()
    {
        var (a, _) = await ImportAsync(30, "a-");
        var (b, _) = await ImportAsync(30, "b-");
        var simulator = Simulators.Create(time: Time);

        var dispatcher = CreateDispatcher(new SimulatorHandler(simulator), new DispatchOptions { Concurrency = 2 });
        using var stop = new CancellationTokenSource();
        var running = dispatcher.RunAsync(null, stop.Token);
        await Time.RunUntilAsync(Task.WhenAll(dispatcher.WaitForBatchAsync(a, Ct), dispatcher.WaitForBatchAsync(b, Ct)), TimeSpan.FromMilliseconds(50), () => dispatcher.IsQuiet(0));
        await stop.CancelAsync();
        await running;

        Assert.Equal(30, (await Store.GetBatchAsync(a, Ct))!.Succeeded);
        Assert.Equal(30, (await Store.GetBatchAsync(b, Ct))!.Succeeded);
    }

    [Fact]
    public async Task ABatchFilter_LeavesOtherBatchesAlone()
    {
        var (mine, _) = await ImportAsync(10, "mine-");
        var (other, _) = await ImportAsync(10, "other-");
        var simulator = Simulators.Create(time: Time);
        var dispatcher = CreateDispatcher(new SimulatorHandler(simulator));
        using var stop = new CancellationTokenSource();

        var running = dispatcher.RunAsync(mine, stop.Token);
        await Time.RunUntilAsync(dispatcher.WaitForBatchAsync(mine, Ct), TimeSpan.FromMilliseconds(50), () => dispatcher.IsQuiet(0));
        await stop.CancelAsync();
        await running;

        Assert.Equal(10, simulator.Stats().Requests);
        var untouched = await Store.GetBatchAsync(other, Ct);
        Assert.Equal((BatchStatus.InProgress, 0L), (untouched!.Status, untouched.Finished));
        Assert.Equal(10, (await Store.ClaimAsync("gpt-4.1-mini", other, 100, Time.GetUtcNow(), Time.GetUtcNow().AddMinutes(1), Ct)).Count);
    }

    [Fact]
    public async Task AnOutageOverHttp_ItemsWaitForTheProvider_AndNoneFailsForIt()
    {
        var (batchId, _) = await ImportAsync(200);
        await using var server = await Simulators.StartHttpAsync();
        var provider = server.Provider;
        var refusedAtDown = 0L;
        provider.RequestReceived += total =>
        {
            // Down at the 50th request; back once 12 connections were refused (the breaker's probes among them).
            if (total == 50)
            {
                refusedAtDown = provider.Stats().Resets;
                provider.Down = true;
            }
            else if (provider.Down && provider.Stats().Resets - refusedAtDown >= 12)
            {
                provider.Down = false;
            }
        };
        await RunOverHttpAsync(server, batchId,
            new DispatchOptions { Concurrency = 8, MaxAttempts = 2, BreakerBreakDuration = TimeSpan.FromMilliseconds(50), BreakerMaxBreakDuration = TimeSpan.FromMilliseconds(100) });

        var batch = await Store.GetBatchAsync(batchId, Ct);
        Assert.Equal((200L, 0L), (batch!.Succeeded, batch.Failed));
        Assert.InRange(provider.Stats().Resets, 12, 20);
    }

    [Fact]
    public async Task AFullRunOverHttp_AgainstAFaultySimulator_SucceedsForEveryItem()
    {
        var (batchId, requests) = await ImportAsync(300);
        await using var server = await Simulators.StartHttpAsync(new SimulatorOptions { Error500Rate = 0.05, Error503Rate = 0.05, ResetRate = 0.05 }, seed: 5);
        await RunOverHttpAsync(server, batchId,
            new DispatchOptions { Concurrency = 16, MaxAttempts = 20, RetryBaseDelay = TimeSpan.FromMilliseconds(5), RetryMaxDelay = TimeSpan.FromMilliseconds(50) });

        var received = server.Provider.ReceivedCounts();
        Assert.All(requests, r => Assert.True(received.ContainsKey(r.Key), $"{r.CustomId} was never received"));
        Assert.Equal(300, received.Count);
        Assert.True(server.Provider.Stats().Resets > 0);
        Assert.Equal(300, (await Store.GetBatchAsync(batchId, Ct))!.Succeeded);
    }

    private static async Task WaitUntilAsync(Func<Task<bool>> condition)
    {
        while (!await condition())
        {
            await Task.Yield();
        }
    }
}
