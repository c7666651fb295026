using System.Net;
using System.Text;
using Shepherd.Engine.Dispatch;
using Shepherd.Engine.Model;
using Shepherd.Engine.Storage;
using Shepherd.Engine.Upstreams;
using Shepherd.Simulator;
using Shepherd.Testing;

namespace Shepherd.Engine.Tests.Dispatch;

/// <summary>What a real provider does to a new user in the first hour: a wrong key, a dead url, a sprinkle of 5xx.</summary>
public sealed class UpstreamTroubleTests : DispatchTestBase
{
    private static readonly TimeSpan Step = TimeSpan.FromMilliseconds(10);

    private static UpstreamOptions Upstream(string? key = null) => new() { BaseUrl = new Uri("http://upstream.test/v1"), ApiKey = key is null ? null : new Secret(key) };

    /// <summary>Runs <paramref name="dispatcher"/> on the fake clock until it gives up on its own, and returns why.</summary>
    private async Task<LaneState?> RunUntilItGivesUpAsync(Dispatcher dispatcher, string batchId, Func<long> waitingOnTheClock)
    {
        var running = dispatcher.RunAsync(batchId, Ct);
        await Time.RunUntilAsync(running, Step, () => dispatcher.IsQuiet(waitingOnTheClock()));
        return await running;
    }

    /// <summary>Claims what is queued of the batch now: every item that waits, with the attempt its next send would be.</summary>
    private async Task<IReadOnlyList<ClaimedItem>> QueuedAsync(string batchId) =>
        await Store.ClaimAsync("gpt-4.1-mini", batchId, 10_000, Time.GetUtcNow(), Time.GetUtcNow().AddMinutes(1), Ct);

    [Fact]
    public async Task ARefusedKey_StopsTheRun_AfterFewerRequestsThanTheConcurrency_AndNoItemSpendsAnAttempt()
    {
        var (batchId, requests) = await ImportAsync(100);
        var simulator = Simulators.Create(new SimulatorOptions { ApiKey = "right", Latency = TimeSpan.FromMilliseconds(50) }, Time);
        var options = new DispatchOptions { Concurrency = 32, StopWhenKeyRefused = true };

        var stoppedBy = await RunUntilItGivesUpAsync(CreateDispatcher(new SimulatorHandler(simulator), options, Upstream("sk-wrong")), batchId, () => simulator.WaitingOnTheClock);

        Assert.NotNull(stoppedBy);
        Assert.Equal(LaneCondition.KeyRefused, stoppedBy.Condition);
        Assert.Equal(("upstream.test", "gpt-4.1-mini"), (stoppedBy.Upstream, stoppedBy.Model));
        Assert.StartsWith("HTTP 401: Incorrect API key provided", stoppedBy.Halt!.Reason, StringComparison.Ordinal);
        Assert.InRange(simulator.Stats().Requests, options.RefusalsToStop, options.InitialConcurrency);
        var batch = await Store.GetBatchAsync(batchId, Ct);
        Assert.Equal((BatchStatus.InProgress, 0L), (batch!.Status, batch.Finished));
        var queued = await QueuedAsync(batchId);
        Assert.Equal(100, queued.Count);
        Assert.All(queued, item => Assert.Equal(1, item.Attempt));

        // The same batch with the right key: every request is answered once.
        await Store.ReleaseLeasesAsync(Ct);
        var fixedKey = CreateDispatcher(new SimulatorHandler(simulator), options, Upstream("right"));
        await RunToCompletionAsync(fixedKey, batchId, () => simulator.WaitingOnTheClock);
        Assert.Equal(100, (await Store.GetBatchAsync(batchId, Ct))!.Succeeded);
        Assert.All(requests, r => Assert.Equal(1, simulator.ExecutedCounts().GetValueOrDefault(r.Key)));
    }

    [Fact]
    public async Task OnAServer_ARefusedLane_Probes_ShowsItsState_AndSendsAgainOnceTheKeyIsTaken()
    {
        var (batchId, _) = await ImportAsync(40);
        var simulator = Simulators.Create(new SimulatorOptions { Latency = TimeSpan.FromMilliseconds(20) }, Time);
        var gate = new KeyGate(new SimulatorHandler(simulator));
        var options = new DispatchOptions { Concurrency = 8, RefusedKeyProbeInterval = TimeSpan.FromSeconds(30) };
        var dispatcher = CreateDispatcher(gate, options, Upstream("sk-key"));
        using var stop = new CancellationTokenSource();
        var running = dispatcher.RunAsync(null, stop.Token);

        await Time.RunUntilAsync(UntilAsync(() => dispatcher.Lanes.Any(lane => lane.Condition == LaneCondition.KeyRefused)), Step, () => dispatcher.IsQuiet(simulator.WaitingOnTheClock));
        var refusedAt = Time.GetUtcNow();
        // Two minutes on, the lane has only probed: once per interval, one at a time.
        await Time.RunUntilAsync(UntilAsync(() => Time.GetUtcNow() >= refusedAt.AddMinutes(2)), Step, () => dispatcher.IsQuiet(simulator.WaitingOnTheClock));
        var lane = Assert.Single(dispatcher.Lanes);
        Assert.Equal(LaneCondition.KeyRefused, lane.Condition);
        Assert.Contains("invalid x-api-key", lane.Halt!.Reason, StringComparison.Ordinal);
        Assert.InRange(gate.Refused, options.RefusalsToStop, options.InitialConcurrency + 4);
        Assert.Equal(BatchStatus.InProgress, (await Store.GetBatchAsync(batchId, Ct))!.Status);

        gate.Open = true;
        await Time.RunUntilAsync(dispatcher.WaitForBatchAsync(batchId, Ct), Step, () => dispatcher.IsQuiet(simulator.WaitingOnTheClock));
        await stop.CancelAsync();
        Assert.Null(await running);
        var batch = await Store.GetBatchAsync(batchId, Ct);
        Assert.Equal((40L, 0L), (batch!.Succeeded, batch.Failed));
        Assert.Equal(LaneCondition.Sending, Assert.Single(dispatcher.Lanes).Condition);
    }

    [Fact]
    public async Task WhenTheUpstreamStaysDown_TheRunGivesUpAfterMaxOutage_FailingNothing_AndResumesLater()
    {
        var (batchId, _) = await ImportAsync(50);
        var refused = new ScriptedHandler((_, _) => throw new HttpRequestException(HttpRequestError.ConnectionError, "connection failed: Connection refused"));
        var options = new DispatchOptions { Concurrency = 8, MaxOutage = TimeSpan.FromMinutes(2) };
        var started = Time.GetUtcNow();

        var stoppedBy = await RunUntilItGivesUpAsync(CreateDispatcher(refused, options), batchId, () => 0);

        Assert.NotNull(stoppedBy);
        Assert.Equal(LaneCondition.Down, stoppedBy.Condition);
        Assert.Contains("Connection refused", stoppedBy.Halt!.Reason, StringComparison.Ordinal);
        Assert.InRange(Time.GetUtcNow() - started, TimeSpan.FromMinutes(2), TimeSpan.FromMinutes(2.5));
        // What was in flight when it went down, then probes only, at most every 8 s.
        Assert.InRange(refused.Received.Count, options.BreakerFailuresToOpen, (2 * options.InitialConcurrency) + (2 * 60 / 8) + 4);
        var batch = await Store.GetBatchAsync(batchId, Ct);
        Assert.Equal((BatchStatus.InProgress, 0L), (batch!.Status, batch.Finished));

        await Store.ReleaseLeasesAsync(Ct);
        await RunToCompletionAsync(CreateDispatcher(new SimulatorHandler(Simulators.Create(time: Time)), options), batchId);
        Assert.Equal(50, (await Store.GetBatchAsync(batchId, Ct))!.Succeeded);
    }

    [Fact]
    public async Task WhileOneUpstreamIsDown_AnotherServesTheModel_AndTheRunDoesNotGiveUp()
    {
        var (batchId, _) = await ImportAsync(60);
        var refused = new ScriptedHandler((_, _) => throw new HttpRequestException(HttpRequestError.ConnectionError, "connection failed: Connection refused"));
        var simulator = Simulators.Create(new SimulatorOptions { Latency = TimeSpan.FromSeconds(1) }, Time);
        var options = new DispatchOptions { Concurrency = 1, MaxOutage = TimeSpan.FromSeconds(5), StopWhenKeyRefused = true };
        var dispatcher = CreateDispatcher(
            [(refused, new UpstreamOptions { Name = "down", BaseUrl = new Uri("http://down.test/v1") }), (new SimulatorHandler(simulator), new UpstreamOptions { Name = "up", BaseUrl = new Uri("http://up.test/v1") })],
            options);

        await RunToCompletionAsync(dispatcher, batchId, () => simulator.WaitingOnTheClock);

        Assert.Equal(60, (await Store.GetBatchAsync(batchId, Ct))!.Succeeded);
    }

    [Fact]
    public async Task ASprinkleOf5xx_IsRetriedAtOnce_WithoutPausingTheLane_EvenWhenItAsksToWait()
    {
        var (batchId, _) = await ImportAsync(400);
        var simulator = Simulators.Create(
            new SimulatorOptions { Latency = TimeSpan.FromMilliseconds(50), Error503Rate = 0.02, Error529Rate = 0.01, ErrorRetryAfter = TimeSpan.FromSeconds(30) }, Time, seed: 21);
        var dispatcher = CreateDispatcher(new SimulatorHandler(simulator), new DispatchOptions { Concurrency = 16, InitialConcurrency = 16 });
        var started = Time.GetUtcNow();

        await RunToCompletionAsync(dispatcher, batchId, () => simulator.WaitingOnTheClock);

        Assert.Equal(400, (await Store.GetBatchAsync(batchId, Ct))!.Succeeded);
        Assert.True(dispatcher.Counters.Retries > 0);
        Assert.Equal(16, Assert.Single(dispatcher.Lanes).ConcurrencyLimit);
        // 400 requests of 50 ms, 16 at a time, take 1.25 s; one 30 s wait for a retry-after would show.
        var took = await TookAsync(batchId, started);
        Assert.True(took < TimeSpan.FromSeconds(5), $"the batch took {took}");
    }

    [Fact]
    public async Task ARunOf5xx_BacksOff_AndKeepsToTheRetryAfter()
    {
        var (batchId, _) = await ImportAsync(1);
        var overloaded = ScriptedHandler.Json(HttpStatusCode.ServiceUnavailable, """{"error":{"message":"overloaded"}}""", ("retry-after", "3"));
        var handler = new ScriptedHandler([.. Enumerable.Repeat(overloaded, FailureWindow.RunThreshold + 2), ScriptedHandler.Json(HttpStatusCode.OK, """{"usage":{"prompt_tokens":1,"completion_tokens":1}}""")]);
        var sentAt = new List<DateTimeOffset>();
        var dispatcher = CreateDispatcher(new Recording(handler, Time, sentAt), new DispatchOptions { MaxAttempts = 20, BreakerFailuresToOpen = 100 });

        await RunToCompletionAsync(dispatcher, batchId);

        Assert.Equal(1, (await Store.GetBatchAsync(batchId, Ct))!.Succeeded);
        var gaps = sentAt.Zip(sentAt.Skip(1), (a, b) => b - a).ToList();
        // Sprinkle or run, a failure is retried; once they come in a run, each waits the retry-after.
        Assert.All(gaps.Skip(FailureWindow.RunThreshold - 1), gap => Assert.True(gap >= TimeSpan.FromSeconds(3), $"a retry went after {gap}"));
        Assert.All(gaps.Take(FailureWindow.RunThreshold - 1), gap => Assert.True(gap < TimeSpan.FromSeconds(3), $"a retry of a sprinkle waited {gap}"));
    }

    private static async Task UntilAsync(Func<bool> condition)
    {
        while (!condition())
        {
            await Task.Yield();
        }
    }

    /// <summary>Answers 401 as Anthropic does until <see cref="Open"/> is set, then lets requests through.</summary>
    private sealed class KeyGate(HttpMessageHandler inner) : DelegatingHandler(inner)
    {
        private int _refused;

        public volatile bool Open;

        public int Refused => Volatile.Read(ref _refused);

        protected override Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken)
        {
            if (Open)
            {
                return base.SendAsync(request, cancellationToken);
            }

            Interlocked.Increment(ref _refused);
            return Task.FromResult(new HttpResponseMessage(HttpStatusCode.Unauthorized)
            {
                RequestMessage = request,
                Content = new StringContent("""{"type":"error","error":{"type":"authentication_error","message":"invalid x-api-key"}}""", Encoding.UTF8, "application/json"),
            });
        }
    }

    /// <summary>Notes the fake time of every request it passes on.</summary>
    private sealed class Recording(HttpMessageHandler inner, TimeProvider time, List<DateTimeOffset> sentAt) : DelegatingHandler(inner)
    {
        protected override Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken)
        {
            lock (sentAt)
            {
                sentAt.Add(time.GetUtcNow());
            }

            return base.SendAsync(request, cancellationToken);
        }
    }
}
