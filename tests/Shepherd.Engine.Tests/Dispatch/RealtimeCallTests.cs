using System.Net;
using System.Text;
using Shepherd.Engine.Dispatch;
using Shepherd.Engine.Formats;
using Shepherd.Engine.Pricing;
using Shepherd.Engine.Upstreams;
using Shepherd.Simulator;
using Shepherd.Testing;

namespace Shepherd.Engine.Tests.Dispatch;

/// <summary>
/// Realtime calls in the dispatcher, on the fake clock: ahead of batch work on its lanes, tried
/// again within their deadline and no longer, answered with the provider's last word when the
/// deadline passes, and never written to the store.
/// </summary>
public sealed class RealtimeCallTests : DispatchTestBase
{
    private static readonly TimeSpan Step = TimeSpan.FromMilliseconds(10);

    private static readonly byte[] Body = Encoding.UTF8.GetBytes("""{"model":"gpt-4.1-mini","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}""");

    private RealtimeCall Call(TimeSpan timeout) => new(BatchEndpoints.ChatCompletions, "gpt-4.1-mini", Body, "acme", Time.GetUtcNow() + timeout);

    private const string Ok = """{"id":"c","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"hello"},"finish_reason":"stop"}],"usage":{"prompt_tokens":8,"completion_tokens":1,"total_tokens":9}}""";

    private const string Busy = """{"error":{"message":"overloaded","type":"server_error","code":null}}""";

    /// <summary>Runs the dispatcher until <paramref name="call"/> is answered, and returns the answer with the time it took.</summary>
    private async Task<(RealtimeAnswer Answer, TimeSpan Took)> AnswerAsync(Dispatcher dispatcher, RealtimeCall call, Func<long>? waitingOnTheClock = null)
    {
        using var stop = new CancellationTokenSource();
        var running = dispatcher.RunAsync(null, stop.Token);
        var started = Time.GetUtcNow();
        var answering = dispatcher.CallAsync(call, Ct);
        await Time.RunUntilAsync(answering, Step, () => dispatcher.IsQuiet(waitingOnTheClock?.Invoke() ?? 0));
        var took = Time.GetUtcNow() - started;
        await stop.CancelAsync();
        await running;
        return (await answering, took);
    }

    [Fact]
    public async Task ATransientFailure_IsTriedAgain_WithinTheDeadline()
    {
        var handler = new ScriptedHandler(ScriptedHandler.Json(HttpStatusCode.ServiceUnavailable, Busy), ScriptedHandler.Json(HttpStatusCode.ServiceUnavailable, Busy), ScriptedHandler.Json(HttpStatusCode.OK, Ok, ("x-request-id", "req_upstream")));
        var dispatcher = CreateDispatcher(handler, new DispatchOptions { RetryBaseDelay = TimeSpan.FromMilliseconds(100), IsolatedRetryBaseDelay = TimeSpan.FromMilliseconds(100) });

        var (answer, _) = await AnswerAsync(dispatcher, Call(TimeSpan.FromMinutes(1)));

        Assert.Equal(200, answer.StatusCode);
        Assert.Equal(3, answer.Attempts);
        Assert.Equal(Ok, Encoding.UTF8.GetString(answer.Body!));
        Assert.Contains(answer.Headers, h => h.Key.Equals("x-request-id", StringComparison.OrdinalIgnoreCase) && h.Value == "req_upstream");
        Assert.Equal(3, handler.Received.Count);
        Assert.Equal((3L, PriceTable.BuiltIn.Price("gpt-4.1-mini", 8, 1).Nanos), dispatcher.RealtimeCost["acme"]);
    }

    [Fact]
    public async Task NoAttemptStartsAfterTheDeadline_AndTheCallerGetsTheProvidersLastAnswer_ByIt()
    {
        var deadline = Time.GetUtcNow() + TimeSpan.FromSeconds(2);
        var sentAt = new List<DateTimeOffset>();
        var handler = new ScriptedHandler(async (request, cancellationToken) =>
        {
            lock (sentAt)
            {
                sentAt.Add(Time.GetUtcNow());
            }

            return await ScriptedHandler.Json(HttpStatusCode.ServiceUnavailable, Busy)(request, cancellationToken);
        });
        var dispatcher = CreateDispatcher(handler, new DispatchOptions { RetryBaseDelay = TimeSpan.FromSeconds(1), IsolatedRetryBaseDelay = TimeSpan.FromSeconds(1), MaxAttempts = 50 });

        var (answer, took) = await AnswerAsync(dispatcher, Call(TimeSpan.FromSeconds(2)));

        Assert.Equal(503, answer.StatusCode);
        Assert.Equal(Busy, Encoding.UTF8.GetString(answer.Body!));
        Assert.Equal(sentAt.Count, answer.Attempts);
        Assert.All(sentAt, at => Assert.True(at < deadline, $"an attempt went at {at - deadline} past the deadline"));
        Assert.True(took <= TimeSpan.FromSeconds(2.01), $"answered after {took}");
    }

    [Fact]
    public async Task ARateLimitedCall_WaitsForItsLane_UntilTheDeadline_ThenGetsTheProviders429()
    {
        var handler = new ScriptedHandler(ScriptedHandler.Json(HttpStatusCode.TooManyRequests, """{"error":{"message":"slow down","type":"requests","code":"rate_limit_exceeded"}}""", ("retry-after", "60")));
        var dispatcher = CreateDispatcher(handler);

        var (answer, took) = await AnswerAsync(dispatcher, Call(TimeSpan.FromSeconds(3)));

        Assert.Equal(429, answer.StatusCode);
        Assert.Contains(answer.Headers, h => h.Key.Equals("retry-after", StringComparison.OrdinalIgnoreCase) && h.Value == "60");
        Assert.Single(handler.Received);
        Assert.InRange(took, TimeSpan.FromSeconds(3), TimeSpan.FromSeconds(3.1));
    }

    [Fact]
    public async Task AnUpstreamThatIsDown_AnswersTheCallAtOnce_With503()
    {
        var handler = new ScriptedHandler((_, _) => throw new HttpRequestException(HttpRequestError.ConnectionError, "connection failed: Connection refused"));
        var dispatcher = CreateDispatcher(handler, new DispatchOptions { BreakerFailuresToOpen = 2, RetryBaseDelay = TimeSpan.FromMilliseconds(50), IsolatedRetryBaseDelay = TimeSpan.FromMilliseconds(50) });

        var (first, _) = await AnswerAsync(dispatcher, Call(TimeSpan.FromMinutes(10)));
        var (next, took) = await AnswerAsync(dispatcher, Call(TimeSpan.FromMinutes(10)));

        Assert.Equal("upstream_unavailable", first.Error?.Code);
        Assert.Equal(503, first.Error!.Status);
        Assert.Contains("Connection refused", first.Error.Message, StringComparison.Ordinal);
        Assert.Equal("upstream_unavailable", next.Error?.Code);
        Assert.True(took < TimeSpan.FromSeconds(1), $"answered after {took}");
    }

    [Fact]
    public async Task WhenOneUpstreamIsDown_CallsFailOverToAnother_ThatServesTheModel()
    {
        var dead = new ScriptedHandler((_, _) => throw new HttpRequestException(HttpRequestError.ConnectionError, "connection failed: Connection refused"));
        var simulator = Simulators.Create(new SimulatorOptions { Latency = TimeSpan.FromMilliseconds(20) }, Time);
        var dispatcher = CreateDispatcher(
            [
                (dead, new UpstreamOptions { Name = "dead", BaseUrl = new Uri("http://dead.test/v1") }),
                (new SimulatorHandler(simulator), new UpstreamOptions { Name = "alive", BaseUrl = new Uri("http://alive.test/v1") }),
            ],
            new DispatchOptions { BreakerFailuresToOpen = 2, IsolatedRetryBaseDelay = TimeSpan.FromMilliseconds(20) });

        var answers = new List<RealtimeAnswer>();
        for (var i = 0; i < 10; i++)
        {
            answers.Add((await AnswerAsync(dispatcher, Call(TimeSpan.FromMinutes(1)), () => simulator.WaitingOnTheClock)).Answer);
        }

        Assert.All(answers, answer => Assert.Equal(200, answer.StatusCode));
        Assert.Equal(10, simulator.Stats().Requests);
        // The dead one was tried until its breaker opened, then left alone.
        Assert.InRange(dead.Received.Count, 1, 3);
    }

    [Fact]
    public async Task ACall_GoesAheadOfEveryQueuedBatchItem_AndLeavesNothingInTheStore()
    {
        var (batchId, _) = await ImportAsync(60);
        var simulator = Simulators.Create(new SimulatorOptions { Latency = TimeSpan.FromSeconds(1) }, Time);
        var dispatcher = CreateDispatcher(new SimulatorHandler(simulator), new DispatchOptions { Concurrency = 2, InitialConcurrency = 2 });
        using var stop = new CancellationTokenSource();
        var running = dispatcher.RunAsync(null, stop.Token);
        await Time.RunUntilAsync(UntilAsync(async () => (await Store.GetBatchAsync(batchId, Ct))!.Succeeded >= 4), Step, () => dispatcher.IsQuiet(simulator.WaitingOnTheClock));

        var before = (await Store.GetBatchAsync(batchId, Ct))!.Succeeded;
        var answering = dispatcher.CallAsync(Call(TimeSpan.FromMinutes(1)), Ct);
        var asked = Time.GetUtcNow();
        await Time.RunUntilAsync(answering, Step, () => dispatcher.IsQuiet(simulator.WaitingOnTheClock));
        var took = Time.GetUtcNow() - asked;
        var batch = await Store.GetBatchAsync(batchId, Ct);
        await stop.CancelAsync();
        await running;

        // The next free slot of the lane was the call's: one request's latency, at most two, while
        // the batch, with 50 and more requests still queued, got no more than the two in flight and one round.
        Assert.Equal(200, (await answering).StatusCode);
        Assert.InRange(took, TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(2.1));
        // The batch had requests still queued behind the call (the fake clock may run on a little while the store is read).
        Assert.True(before <= 50, $"{before} answered before the call");
        Assert.InRange(batch!.Succeeded - before, 0, 4);
        Assert.Equal(60, batch.Total);
    }

    private static Task UntilAsync(Func<Task<bool>> condition) => Task.Run(async () =>
    {
        while (!await condition())
        {
            await Task.Yield();
        }
    });
}
