using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Time.Testing;
using Shepherd.Testing;

namespace Shepherd.Client.Tests;

/// <summary>Waiting, retries and the breaker on a fake clock, against scripted answers.</summary>
public sealed class ResilienceTests
{
    private static readonly DateTimeOffset Start = DateTimeOffset.Parse("2026-11-29T12:00:00Z", System.Globalization.CultureInfo.InvariantCulture);

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private static string BatchJson(string status, long completed, long total = 100) =>
        $$"""{"id":"batch_1","object":"batch","status":"{{status}}","request_counts":{"total":{{total}},"completed":{{completed}},"failed":0},"created_at":1795953600,"expires_at":null,"cost_usd":{{completed * 0.001m}}}""";

    private static (ShepherdClient Client, ScriptedHandler Handler, List<TimeSpan> Times) Scripted(FakeTimeProvider time, Action<ShepherdClientOptions>? tune, params Func<HttpRequestMessage, CancellationToken, Task<HttpResponseMessage>>[] script)
    {
        var times = new List<TimeSpan>();
        var handler = new ScriptedHandler([.. script.Select(step => (Func<HttpRequestMessage, CancellationToken, Task<HttpResponseMessage>>)((request, ct) =>
        {
            lock (times)
            {
                times.Add(time.GetUtcNow() - Start);
            }

            return step(request, ct);
        }))]);
        var options = new ShepherdClientOptions { BaseUrl = new Uri("http://shepherd.test"), ApiKey = "k", TimeProvider = time, RetryBaseDelay = TimeSpan.FromMilliseconds(100) };
        tune?.Invoke(options);
        return (new ShepherdClient(options, new HttpClient(handler)), handler, times);
    }

    private static Func<HttpRequestMessage, CancellationToken, Task<HttpResponseMessage>> Answer(string json) => ScriptedHandler.Json(HttpStatusCode.OK, json);

    [Fact]
    public async Task Waiting_PollsFrom2Seconds_Growing1Point5Times_AndReportsProgressWithAnEta()
    {
        var time = new FakeTimeProvider(Start);
        var (client, _, times) = Scripted(time, o => o.Api = BatchApi.OpenAI,
            Answer(BatchJson("in_progress", 0)), Answer(BatchJson("in_progress", 10)), Answer(BatchJson("in_progress", 30)),
            Answer(BatchJson("in_progress", 60)), Answer(BatchJson("in_progress", 90)), Answer(BatchJson("completed", 100)));
        using var _ = client;
        var reports = new List<BatchProgress>();

        var wait = client.WaitForCompletionAsync("batch_1", new SynchronousProgress<BatchProgress>(reports.Add), cancellationToken: Ct);
        await time.RunUntilAsync(wait, TimeSpan.FromMilliseconds(125));
        var done = await wait;

        Assert.Equal([0, 2, 5, 9.5, 16.25, 26.375], times.Select(t => t.TotalSeconds));
        Assert.Equal((BatchStatus.Completed, false), (done.Batch.Status, done.TimedOut));
        Assert.Equal([0, 10, 30, 60, 90, 100], reports.Select(r => r.Percent));
        Assert.Null(reports[0].Eta);
        Assert.Equal(TimeSpan.FromSeconds(18), reports[1].Eta);
        Assert.Equal((0.010m, 0.1m), (reports[1].CostUsd, reports[1].ProjectedCostUsd));
        Assert.Null(reports[0].ProjectedCostUsd);
        Assert.Equal(TimeSpan.Zero, reports[^1].Eta);
    }

    [Fact]
    public async Task ATimeout_StopsOnlyTheWaiting_NotTheBatch()
    {
        var time = new FakeTimeProvider(Start);
        var (client, handler, times) = Scripted(time, o => o.Api = BatchApi.OpenAI, Answer(BatchJson("in_progress", 5)));
        using var _ = client;

        var wait = client.WaitForCompletionAsync("batch_1", timeout: TimeSpan.FromSeconds(10), cancellationToken: Ct);
        await time.RunUntilAsync(wait, TimeSpan.FromMilliseconds(125));
        var done = await wait;

        Assert.True(done.TimedOut);
        Assert.Equal(BatchStatus.InProgress, done.Batch.Status);
        Assert.Equal([0, 2, 5, 9.5, 10], times.Select(t => t.TotalSeconds));
        Assert.All(handler.Received, r => Assert.Equal(HttpMethod.Get, r.Request.Method));
    }

    [Fact]
    public void TheDefaultTimeout_GrowsWithTheBatch_AndEndsWithItsWindow()
    {
        var time = new FakeTimeProvider(Start);
        using var client = new ShepherdClient(new ShepherdClientOptions { BaseUrl = new Uri("http://shepherd.test"), TimeProvider = time });

        Assert.Equal(TimeSpan.FromMinutes(10) + TimeSpan.FromSeconds(500), client.DefaultTimeout(new Batch { Id = "b", Status = BatchStatus.InProgress, Total = 1000 }));
        Assert.Equal(TimeSpan.FromMinutes(70), client.DefaultTimeout(new Batch { Id = "b", Status = BatchStatus.InProgress, Total = 1_000_000, ExpiresAt = Start.AddHours(1) }));
    }

    [Fact]
    public async Task ATransientFailure_IsRetried_AfterTheServersRetryAfter()
    {
        var time = new FakeTimeProvider(Start);
        var (client, _, times) = Scripted(time, null,
            ScriptedHandler.Json(HttpStatusCode.ServiceUnavailable, """{"error":{"message":"busy","type":"server_error","param":null,"code":null}}""", ("retry-after", "3")),
            Answer(BatchJson("in_progress", 1)));
        using var _ = client;

        var get = client.GetBatchAsync("batch_1", Ct);
        await time.RunUntilAsync(get, TimeSpan.FromMilliseconds(125));

        Assert.Equal(1, (await get).Succeeded);
        Assert.Equal([0, 3], times.Select(t => t.TotalSeconds));
    }

    [Fact]
    public async Task ARefusal_IsNotRetried_AndSaysWhatTheServerSaid()
    {
        var time = new FakeTimeProvider(Start);
        var (client, handler, _) = Scripted(time, null,
            ScriptedHandler.Json(HttpStatusCode.BadRequest, """{"error":{"message":"requests[3]: custom_id is missing","type":"invalid_request_error","param":"requests[3]","code":"missing_custom_id"}}"""));
        using var _ = client;

        var error = await Assert.ThrowsAsync<ShepherdApiException>(() => client.GetBatchAsync("batch_1", Ct));

        Assert.Equal((400, "missing_custom_id", "requests[3]"), (error.StatusCode, error.ErrorCode, error.Param));
        Assert.Contains("custom_id is missing", error.Message, StringComparison.Ordinal);
        Assert.Single(handler.Received);
    }

    [Fact]
    public async Task TheBreaker_HoldsCallsBackAfterFailures_ThenLetsATrialThrough()
    {
        var time = new FakeTimeProvider(Start);
        var failure = ScriptedHandler.Json(HttpStatusCode.InternalServerError, """{"error":{"message":"down","type":"server_error","param":null,"code":null}}""");
        var (client, handler, _) = Scripted(time, o => (o.MaxRetries, o.BreakerFailures, o.BreakerDuration) = (0, 2, TimeSpan.FromSeconds(10)),
            failure, failure, Answer(BatchJson("in_progress", 1)));
        using var _ = client;

        Assert.Equal(500, (await Assert.ThrowsAsync<ShepherdApiException>(() => client.GetBatchAsync("batch_1", Ct))).StatusCode);
        Assert.Equal(500, (await Assert.ThrowsAsync<ShepherdApiException>(() => client.GetBatchAsync("batch_1", Ct))).StatusCode);
        var held = await Assert.ThrowsAsync<ShepherdApiException>(() => client.GetBatchAsync("batch_1", Ct));
        var sentWhileOpen = handler.Received.Count;
        time.Advance(TimeSpan.FromSeconds(10));
        var trial = await client.GetBatchAsync("batch_1", Ct);
        var after = await client.GetBatchAsync("batch_1", Ct);

        Assert.Equal(("circuit_open", (int?)null), (held.ErrorCode, held.StatusCode));
        Assert.Equal(2, sentWhileOpen);
        Assert.Equal((1, 1), (trial.Succeeded, after.Succeeded));
    }

    [Fact]
    public async Task RateLimits_DoNotOpenTheBreaker()
    {
        var time = new FakeTimeProvider(Start);
        var limited = ScriptedHandler.Json(HttpStatusCode.TooManyRequests, """{"error":{"message":"slow down","type":"rate_limit_exceeded","param":null,"code":null}}""");
        var (client, handler, _) = Scripted(time, o => (o.MaxRetries, o.BreakerFailures) = (0, 1), limited, limited, limited);
        using var _ = client;

        for (var i = 0; i < 3; i++)
        {
            Assert.Equal(429, (await Assert.ThrowsAsync<ShepherdApiException>(() => client.GetBatchAsync("batch_1", Ct))).StatusCode);
        }

        Assert.Equal(3, handler.Received.Count);
    }

    private static Func<HttpRequestMessage, CancellationToken, Task<HttpResponseMessage>> Unreachable(string why = "connection reset") =>
        (_, _) => Task.FromException<HttpResponseMessage>(new HttpRequestException(why));

    private static Func<HttpRequestMessage, CancellationToken, Task<HttpResponseMessage>> Refused() =>
        (_, _) => Task.FromException<HttpResponseMessage>(new HttpRequestException("refused", new SocketException((int)SocketError.ConnectionRefused)));

    [Fact]
    public async Task AgainstAShepherdServer_EachLookAsksToBeHeldUntilTheEnd_AndTheWaitReturnsWhenTheEndIsAnswered()
    {
        var time = new FakeTimeProvider(Start);
        var (client, handler, times) = Scripted(time, null,
            Answer(BatchJson("in_progress", 0)),
            async (_, ct) =>
            {
                // The server holds the look; the batch ends 0.5 s into it.
                await Task.Delay(TimeSpan.FromMilliseconds(500), time, ct);
                return await Answer(BatchJson("completed", 100))(null!, ct);
            });
        using var _ = client;
        var reports = new List<BatchProgress>();

        var wait = client.WaitForCompletionAsync("batch_1", new SynchronousProgress<BatchProgress>(reports.Add), Ct);
        await time.RunUntilAsync(wait, TimeSpan.FromMilliseconds(100));
        var done = await wait;

        Assert.Equal(["", "?wait=2"], handler.Received.Select(r => r.Request.RequestUri!.Query));
        Assert.Equal([0, 0], times.Select(t => t.TotalSeconds));
        Assert.Equal(BatchStatus.Completed, done.Batch.Status);
        Assert.Equal(TimeSpan.FromMilliseconds(500), time.GetUtcNow() - Start);
        Assert.Equal([0, 100], reports.Select(r => r.Percent));
    }

    [Fact]
    public async Task AWait_RidesOutAnOutage_ReportingReconnecting_AndIsNotHeldBackByTheBreaker()
    {
        var time = new FakeTimeProvider(Start);
        var (client, handler, _) = Scripted(time, o => (o.Api, o.BreakerFailures) = (BatchApi.OpenAI, 2),
            Answer(BatchJson("in_progress", 10)), Unreachable(), Refused(), Unreachable(), Unreachable(), Unreachable(), Unreachable(),
            Answer(BatchJson("completed", 100)), Answer(BatchJson("completed", 100)));
        using var _ = client;
        var reports = new List<BatchProgress>();

        var wait = client.WaitForCompletionAsync("batch_1", new SynchronousProgress<BatchProgress>(reports.Add), Ct);
        await time.RunUntilAsync(wait, TimeSpan.FromMilliseconds(100));
        var done = await wait;
        var after = await client.GetBatchAsync("batch_1", Ct);

        Assert.Equal(BatchStatus.Completed, done.Batch.Status);
        Assert.Equal(9, handler.Received.Count);
        Assert.Equal(6, reports.Count(r => r.Reconnecting));
        Assert.All(reports.Where(r => r.Reconnecting), r => Assert.Equal(10, r.Percent));
        Assert.Contains("nothing listens", reports.Where(r => r.Reconnecting).ElementAt(1).ReconnectReason, StringComparison.Ordinal);
        Assert.False(reports[^1].Reconnecting);
        Assert.Equal(BatchStatus.Completed, after.Status);
    }

    [Fact]
    public async Task AWait_GivesUp_OnlyAfterTheOutageTolerance()
    {
        var time = new FakeTimeProvider(Start);
        var (client, _, _) = Scripted(time, o => (o.Api, o.WaitOutageTolerance) = (BatchApi.OpenAI, TimeSpan.FromMinutes(2)),
            Answer(BatchJson("in_progress", 10)), Unreachable());
        using var _ = client;

        var wait = client.WaitForCompletionAsync("batch_1", Ct);

        var error = await Assert.ThrowsAsync<ShepherdApiException>(() => time.RunUntilAsync(wait, TimeSpan.FromMilliseconds(500)));
        Assert.Equal("connection_failed", error.ErrorCode);
        Assert.InRange(time.GetUtcNow() - Start, TimeSpan.FromMinutes(2), TimeSpan.FromMinutes(2.6));
    }

    [Fact]
    public async Task TheBreaker_CountsTheCallsMade_NotTheRetriesInsideOne()
    {
        var time = new FakeTimeProvider(Start);
        var failure = ScriptedHandler.Json(HttpStatusCode.BadGateway, """{"error":{"message":"bad gateway","type":"server_error","param":null,"code":null}}""");
        var (client, handler, _) = Scripted(time, o => (o.MaxRetries, o.BreakerFailures) = (4, 2), failure);
        using var _ = client;

        await Assert.ThrowsAsync<ShepherdApiException>(() => time.RunUntilAsync(client.GetBatchAsync("batch_1", Ct), TimeSpan.FromMilliseconds(50)));
        var triesOfTheFirst = handler.Received.Count;
        var second = await Assert.ThrowsAsync<ShepherdApiException>(() => time.RunUntilAsync(client.GetBatchAsync("batch_1", Ct), TimeSpan.FromMilliseconds(50)));

        Assert.Equal(502, second.StatusCode);
        Assert.Equal(5, triesOfTheFirst);
        Assert.Equal(10, handler.Received.Count);
        var held = await Assert.ThrowsAsync<ShepherdApiException>(() => client.GetBatchAsync("batch_1", Ct));
        Assert.Equal("circuit_open", held.ErrorCode);
        Assert.StartsWith("The last 2 calls to the server failed (the last: GET /v1/batches/batch_1 answered 502: bad gateway)", held.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task TheBreakersRefusal_BlamesOneCall_WhenOneCallFailed()
    {
        var time = new FakeTimeProvider(Start);
        var (client, _, _) = Scripted(time, o => o.BreakerFailures = 1, Refused());
        using var _ = client;

        await Assert.ThrowsAsync<ShepherdApiException>(() => time.RunUntilAsync(client.GetBatchAsync("batch_1", Ct), TimeSpan.FromMilliseconds(50)));
        var held = await Assert.ThrowsAsync<ShepherdApiException>(() => client.GetBatchAsync("batch_1", Ct));

        Assert.StartsWith("The last call to the server failed (the last: GET /v1/batches/batch_1: nothing listens at shepherd.test", held.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task ARefusedConnection_IsRetriedOnce_SoAOneOffCallFailsFast()
    {
        var time = new FakeTimeProvider(Start);
        var (client, handler, times) = Scripted(time, null, Refused());
        using var _ = client;

        var error = await Assert.ThrowsAsync<ShepherdApiException>(() => time.RunUntilAsync(client.GetBatchAsync("batch_1", Ct), TimeSpan.FromMilliseconds(10)));
        Assert.Equal(("connection_refused", true), (error.ErrorCode, error.IsTransient));
        Assert.Equal(2, handler.Received.Count);
        Assert.InRange(times[^1], TimeSpan.FromMilliseconds(50), TimeSpan.FromMilliseconds(100));
    }

    [Fact]
    public async Task ACallAfterDispose_NamesTheShepherdClient()
    {
        var time = new FakeTimeProvider(Start);
        var (client, _, _) = Scripted(time, null, Answer(BatchJson("in_progress", 1)));
        client.Dispose();

        var error = await Assert.ThrowsAsync<ObjectDisposedException>(() => client.GetBatchAsync("batch_1", Ct));

        Assert.Equal(typeof(ShepherdClient).FullName, error.ObjectName);
    }

    [Fact]
    public void TheProjectedCost_IsNotZero_WhenTheFirstAnswersFailed()
    {
        var progress = new BatchProgress(new Batch { Id = "b", Status = BatchStatus.InProgress, Total = 100, Succeeded = 1, Failed = 9, CostUsd = 0.01m }, null);
        var noneYet = new BatchProgress(new Batch { Id = "b", Status = BatchStatus.InProgress, Total = 100, Failed = 9 }, null);

        Assert.Equal(0.91m, progress.ProjectedCostUsd);
        Assert.Null(noneYet.ProjectedCostUsd);
    }

    [Fact]
    public async Task AProgressOfT_HasHandledEveryReport_BeforeTheWaitReturns()
    {
        var time = new FakeTimeProvider(Start);
        var (client, _, _) = Scripted(time, o => o.Api = BatchApi.OpenAI, Answer(BatchJson("completed", 100)));
        using var _ = client;
        using var gate = new ManualResetEventSlim();
        var handled = new List<double>();

        // Progress<T> posts its handler to the thread pool; this one is held until the gate opens.
        var wait = client.WaitForCompletionAsync("batch_1", new Progress<BatchProgress>(p =>
        {
            gate.Wait(Ct);
            lock (handled)
            {
                handled.Add(p.Percent);
            }
        }), Ct);
        for (var spin = 0; spin < 50; spin++)
        {
            await Task.Yield();
        }

        var returnedBeforeTheHandler = wait.IsCompleted;
        gate.Set();
        await wait;

        Assert.False(returnedBeforeTheHandler);
        Assert.Equal([100], handled);
    }

    [Fact]
    public async Task ATrialCallCancelledByItsCaller_DoesNotLeaveTheBreakerRefusingForever()
    {
        var time = new FakeTimeProvider(Start);
        var failure = ScriptedHandler.Json(HttpStatusCode.InternalServerError, """{"error":{"message":"down","type":"server_error","param":null,"code":null}}""");
        var (client, _, _) = Scripted(time, o => (o.MaxRetries, o.BreakerFailures, o.BreakerDuration) = (0, 1, TimeSpan.FromSeconds(10)),
            failure,
            async (_, ct) =>
            {
                // The trial hangs until its caller gives up.
                await Task.Delay(Timeout.InfiniteTimeSpan, time, ct);
                throw new InvalidOperationException("not reached");
            },
            Answer(BatchJson("in_progress", 1)));
        using var _ = client;
        await Assert.ThrowsAsync<ShepherdApiException>(() => client.GetBatchAsync("batch_1", Ct));
        time.Advance(TimeSpan.FromSeconds(10));

        using var giveUp = new CancellationTokenSource();
        var trial = client.GetBatchAsync("batch_1", giveUp.Token);
        await giveUp.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => trial);
        var next = await client.GetBatchAsync("batch_1", Ct);

        Assert.Equal(1, next.Succeeded);
    }

    [Fact]
    public async Task ACallAndItsRetries_AreOneTracedActivity_AndEachRetryIsLogged()
    {
        var time = new FakeTimeProvider(Start);
        var logged = new List<string>();
        using var logs = LoggerFactory.Create(builder => builder.AddProvider(new ListLoggerProvider(logged)));
        var (client, _, _) = Scripted(time, o => o.LoggerFactory = logs,
            ScriptedHandler.Json(HttpStatusCode.ServiceUnavailable, """{"error":{"message":"busy"}}"""), Answer(BatchJson("in_progress", 1)));
        using var _ = client;
        var traced = new List<System.Diagnostics.Activity>();
        using var listener = new System.Diagnostics.ActivityListener
        {
            ShouldListenTo = source => source.Name == ShepherdClient.ActivitySourceName,
            Sample = (ref System.Diagnostics.ActivityCreationOptions<System.Diagnostics.ActivityContext> _) => System.Diagnostics.ActivitySamplingResult.AllData,
            ActivityStopped = activity =>
            {
                lock (traced)
                {
                    traced.Add(activity);
                }
            },
        };
        System.Diagnostics.ActivitySource.AddActivityListener(listener);

        var look = client.GetBatchAsync("batch_traced", Ct);
        await time.RunUntilAsync(look, TimeSpan.FromMilliseconds(50));
        await look;

        System.Diagnostics.Activity call;
        lock (traced)
        {
            call = Assert.Single(traced, a => a.DisplayName == "GET /v1/batches/batch_traced");
        }

        Assert.Equal((200, 1), (call.GetTagItem("http.response.status_code"), call.GetTagItem("shepherd.retries")));
        Assert.Contains(logged, line => line.Contains("answered 503: busy", StringComparison.Ordinal) && line.Contains("Try 1 again in", StringComparison.Ordinal));
    }

    /// <summary>Keeps what is logged, as lines.</summary>
    private sealed class ListLoggerProvider(List<string> lines) : ILoggerProvider
    {
        public ILogger CreateLogger(string categoryName) => new Lines(lines);

        public void Dispose()
        {
        }

        private sealed class Lines(List<string> lines) : ILogger
        {
            public IDisposable? BeginScope<TState>(TState state)
                where TState : notnull => null;

            public bool IsEnabled(LogLevel logLevel) => true;

            public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
            {
                lock (lines)
                {
                    lines.Add(formatter(state, exception));
                }
            }
        }
    }
}
