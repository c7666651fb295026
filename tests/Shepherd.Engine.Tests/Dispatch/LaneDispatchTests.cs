using System.Net;
using System.Text;
using Shepherd.Engine.Dispatch;
using Shepherd.Engine.Model;
using Shepherd.Engine.Storage;
using Shepherd.Engine.Upstreams;
using Shepherd.Simulator;
using Shepherd.Testing;

namespace Shepherd.Engine.Tests.Dispatch;

/// <summary>
/// Lanes at work against the simulated provider on the same fake clock: time is simulated, so
/// how long a batch takes at the provider's limits is exact and repeatable, not wall-clock.
/// </summary>
public sealed class LaneDispatchTests : DispatchTestBase
{
    private static UpstreamOptions Upstream(string name, int weight = 1, LaneLimits? limits = null, IReadOnlyList<string>? models = null) =>
        new() { Name = name, BaseUrl = new Uri($"http://{name}.test/v1"), Weight = weight, Limits = limits ?? new LaneLimits(), Models = models };

    private static double BoundSeconds(IEnumerable<TestRequest> requests, int rpm, int tpm)
    {
        var list = requests.ToList();
        var tokens = list.Sum(r => SimulatedProvider.CostOf(Encoding.UTF8.GetBytes(r.Body)));
        return Math.Max(tokens / (tpm / 60.0), list.Count / (rpm / 60.0));
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task AtTheProvidersLimits_TheBatchFinishesNearTheBound_WithFewRateLimits(bool configured)
    {
        var requests = BatchFiles.OpenAIChatOfWords(400, 10, 300, 64);
        var (batchId, _) = await ImportAsync(0, requests: requests);
        var simulator = Simulators.Create(new SimulatorOptions { RequestsPerMinute = 600, TokensPerMinute = 60_000 }, Time);
        var limits = configured ? new LaneLimits { RequestsPerMinute = 600, TokensPerMinute = 60_000 } : null;
        var started = Time.GetUtcNow();

        await RunToCompletionAsync(CreateDispatcher([(new SimulatorHandler(simulator), Upstream("sim", limits: limits))]), batchId);

        var elapsed = (await TookAsync(batchId, started)).TotalSeconds;
        var bound = BoundSeconds(requests, 600, 60_000);
        var stats = simulator.Stats();
        Assert.Equal(400, (await Store.GetBatchAsync(batchId, Ct))!.Succeeded);
        Assert.InRange(elapsed, bound * 0.9, bound * (configured ? 1.10 : 1.25));
        Assert.InRange(stats.ByStatus.GetValueOrDefault(429), 0, stats.Requests * 0.05);
    }

    [Theory]
    [InlineData(2, 0, 3)]    // settled on a lane two other nodes send on: a third of the limit
    [InlineData(0, 0, 1)]    // settled and alone on the lane: all of it, though other nodes live
    [InlineData(0, 600, 3)]  // just started: a part per live node, whoever else may be starting too
    public async Task NodesSharingALane_EachKeepToTheirShareOfItsLimit(int othersOnLane, int settleSeconds, int parts)
    {
        var (batchId, _) = await ImportAsync(120);
        // A provider that says nothing of its limits: the lane keeps to the configured one alone.
        var simulator = Simulators.Create(new SimulatorOptions(), Time);
        var dispatcher = CreateDispatcher([(new SimulatorHandler(simulator), Upstream("sim", limits: new LaneLimits { RequestsPerMinute = 600 }))]);
        var others = new Dictionary<string, int>();
        if (othersOnLane > 0)
        {
            others[Lane.KeyOf("sim", "gpt-4.1-mini")] = othersOnLane;
        }

        dispatcher.ShareLanes(new ClusterView(3, others), TimeSpan.FromSeconds(settleSeconds));
        var started = Time.GetUtcNow();

        await RunToCompletionAsync(dispatcher, batchId);

        // 600 a minute, less the headroom, is 9.8 a second: a node keeps to its part of it (the
        // first second's worth goes at once, so a little more on average).
        var perSecond = 120 / (await TookAsync(batchId, started)).TotalSeconds;
        Assert.InRange(perSecond, 9.8 / parts * 0.95, 9.8 / parts * 1.15);
    }

    [Fact]
    public async Task RetryAfter_PausesTheWholeLane_NotJustTheRequest()
    {
        var (batchId, _) = await ImportAsync(3);
        var sentAt = new List<DateTimeOffset>();
        var handler = new ScriptedHandler(
            (_, _) => Answer(HttpStatusCode.TooManyRequests, ("retry-after-ms", "10000")),
            (_, _) => Answer(HttpStatusCode.OK));

        await RunToCompletionAsync(CreateDispatcher(handler, new DispatchOptions { Concurrency = 1 }), batchId);

        Assert.Equal(4, sentAt.Count);
        Assert.True(sentAt[1] - sentAt[0] >= TimeSpan.FromSeconds(10), $"the lane sent again after {sentAt[1] - sentAt[0]}");
        Assert.Equal(3, (await Store.GetBatchAsync(batchId, Ct))!.Succeeded);

        Task<HttpResponseMessage> Answer(HttpStatusCode status, params (string, string)[] headers)
        {
            lock (sentAt)
            {
                sentAt.Add(Time.GetUtcNow());
            }

            return ScriptedHandler.Json(status, "{}", headers)(null!, CancellationToken.None);
        }
    }

    [Fact]
    public async Task RateLimits_DoNotUseUpTheAttempts()
    {
        var (batchId, _) = await ImportAsync(1);
        var handler = new ScriptedHandler(
            ScriptedHandler.Json(HttpStatusCode.TooManyRequests, "{}", ("retry-after-ms", "100")),
            ScriptedHandler.Json(HttpStatusCode.TooManyRequests, "{}", ("retry-after-ms", "100")),
            ScriptedHandler.Json(HttpStatusCode.TooManyRequests, "{}", ("retry-after-ms", "100")),
            ScriptedHandler.Json(HttpStatusCode.OK, "{}"));

        await RunToCompletionAsync(CreateDispatcher(handler, new DispatchOptions { MaxAttempts = 1 }), batchId);

        Assert.Equal(4, handler.Received.Count);
        Assert.Equal(ItemState.Succeeded, (await ResultsAsync(batchId)).Single().State);
    }

    [Fact]
    public async Task WhenAnUpstreamIsDown_TrafficMovesToTheOthers()
    {
        var (batchId, _) = await ImportAsync(60);
        var down = Simulators.Create(time: Time);
        down.Down = true;
        var up = Simulators.Create(time: Time);

        await RunToCompletionAsync(CreateDispatcher([(new SimulatorHandler(down), Upstream("a")), (new SimulatorHandler(up), Upstream("b"))]), batchId);

        Assert.Equal((60L, 0L), ((await Store.GetBatchAsync(batchId, Ct))!.Succeeded, (await Store.GetBatchAsync(batchId, Ct))!.Failed));
        Assert.Equal(60, up.Stats().ByStatus[200]);
        Assert.InRange(down.Stats().Requests, 8, 16);
    }

    [Fact]
    public async Task Weights_ShareTheTraffic()
    {
        var (batchId, _) = await ImportAsync(400);
        var heavy = Simulators.Create(time: Time);
        var light = Simulators.Create(time: Time);

        // Both lanes have room for everything at once, so the shares are the weights' alone.
        var options = new DispatchOptions { Concurrency = 400, InitialConcurrency = 400 };
        await RunToCompletionAsync(CreateDispatcher([(new SimulatorHandler(heavy), Upstream("heavy", 3)), (new SimulatorHandler(light), Upstream("light", 1))], options), batchId);

        Assert.InRange(heavy.Stats().Requests, 290, 310);
        Assert.Equal(400, heavy.Stats().Requests + light.Stats().Requests);
    }

    [Fact]
    public async Task DuringAnOutage_ItemsWait_WithoutUsingTheirAttempts_AndFinishAfterwards()
    {
        var (batchId, _) = await ImportAsync(30);
        var simulator = Simulators.Create(time: Time);
        simulator.Down = true;
        using var recovery = Time.CreateTimer(_ => simulator.Down = false, null, TimeSpan.FromSeconds(60), Timeout.InfiniteTimeSpan);

        await RunToCompletionAsync(CreateDispatcher(new SimulatorHandler(simulator), new DispatchOptions { MaxAttempts = 2 }), batchId);

        var batch = await Store.GetBatchAsync(batchId, Ct);
        Assert.Equal((30L, 0L), (batch!.Succeeded, batch.Failed));
        // The breaker opens after 8 failures; then only probes go, the break doubling up to 8 s.
        Assert.InRange(simulator.Stats().Resets, 8, 30);
    }

    [Fact]
    public async Task HigherPriority_GoesFirstWithinALane()
    {
        var (low, _) = await ImportAsync(10, "low-", BatchPriority.Low);
        var (high, _) = await ImportAsync(10, "high-", BatchPriority.High);
        var order = new List<string>();
        var handler = new ScriptedHandler(async (request, cancellationToken) =>
        {
            var body = await request.Content!.ReadAsStringAsync(cancellationToken);
            lock (order)
            {
                order.Add(body);
            }

            return await ScriptedHandler.Json(HttpStatusCode.OK, "{}")(request, cancellationToken);
        });
        var dispatcher = CreateDispatcher(handler, new DispatchOptions { Concurrency = 1, InitialConcurrency = 1 });
        using var stop = new CancellationTokenSource();

        var running = dispatcher.RunAsync(null, stop.Token);
        await Time.RunUntilAsync(Task.WhenAll(dispatcher.WaitForBatchAsync(low, Ct), dispatcher.WaitForBatchAsync(high, Ct)), TimeSpan.FromMilliseconds(50), () => dispatcher.IsQuiet(0));
        await stop.CancelAsync();
        await running;

        var highBodies = (await Store.ReadResultsAsync(high, 0, Ct).ToListAsync(Ct)).Count;
        Assert.Equal(10, highBodies);
        Assert.Equal(20, order.Count);
        Assert.All(order.Take(10), body => Assert.Contains("#", body, StringComparison.Ordinal));
        Assert.Equal(BatchFiles.OpenAIChat(10, idPrefix: "high-").Select(r => r.Body), order.Take(10));
    }

    [Fact]
    public async Task Cancelling_LetsInFlightRequestsFinish_AndEndsTheRest()
    {
        var (batchId, _) = await ImportAsync(40);
        var simulator = Simulators.Create(new SimulatorOptions { Latency = TimeSpan.FromSeconds(1) }, Time);
        var dispatcher = CreateDispatcher(new SimulatorHandler(simulator), new DispatchOptions { Concurrency = 2, InitialConcurrency = 2 });
        using var stop = new CancellationTokenSource();
        var running = dispatcher.RunAsync(null, stop.Token);
        var sent = new TaskCompletionSource();
        simulator.RequestReceived += total =>
        {
            if (total >= 6)
            {
                sent.TrySetResult();
            }
        };

        await Time.RunUntilAsync(sent.Task, TimeSpan.FromMilliseconds(50));
        await Store.CancelBatchAsync(batchId, Time.GetUtcNow(), Ct);
        dispatcher.NotifyBatchesChanged();
        await Time.RunUntilAsync(dispatcher.WaitForBatchAsync(batchId, Ct), TimeSpan.FromMilliseconds(50));
        await stop.CancelAsync();
        await running;

        var batch = await Store.GetBatchAsync(batchId, Ct);
        Assert.Equal(BatchStatus.Cancelled, batch!.Status);
        Assert.Equal(40, batch.Succeeded + batch.Cancelled);
        Assert.Equal(simulator.Stats().ByStatus[200], batch.Succeeded);
        Assert.InRange(batch.Succeeded, 6, 8);
        Assert.All((await ResultsAsync(batchId)).Where(r => r.State == ItemState.Cancelled), r => Assert.Null(r.Result));
    }

    [Fact]
    public async Task PastItsCompletionWindow_ABatchExpires_KeepingWhatFinished()
    {
        var (batchId, _) = await ImportAsync(40, window: TimeSpan.FromSeconds(10));
        var simulator = Simulators.Create(new SimulatorOptions { RequestsPerMinute = 60 }, Time);

        await RunToCompletionAsync(CreateDispatcher(new SimulatorHandler(simulator), upstream: Upstream("slow", limits: new LaneLimits { RequestsPerMinute = 60 })), batchId);

        var batch = await Store.GetBatchAsync(batchId, Ct);
        Assert.Equal(BatchStatus.Expired, batch!.Status);
        Assert.InRange(batch.Succeeded, 8, 12);
        Assert.Equal(40, batch.Succeeded + batch.Expired);
    }

    [Fact]
    public async Task AModelNoUpstreamServes_FailsItsItems()
    {
        var (batchId, _) = await ImportAsync(2);

        await RunToCompletionAsync(CreateDispatcher(new ScriptedHandler(ScriptedHandler.Json(HttpStatusCode.OK, "{}")), upstream: Upstream("other", models: ["claude-haiku-4.5"])), batchId);

        Assert.All(await ResultsAsync(batchId), r => Assert.Equal("model_not_served", r.Result?.ErrorCode));
    }
}
