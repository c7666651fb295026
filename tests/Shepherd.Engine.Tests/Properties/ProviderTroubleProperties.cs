using System.Text;
using System.Text.Json;
using CsCheck;
using Shepherd.Engine.Dispatch;
using Shepherd.Engine.Model;
using Shepherd.Engine.Storage;
using Shepherd.Engine.Upstreams;
using Shepherd.Engine.Tests.Dispatch;
using Shepherd.Simulator;
using Shepherd.Testing;

namespace Shepherd.Engine.Tests.Properties;

/// <summary>
/// The first hour against a real provider, drawn from a family of providers rather than one:
/// any sprinkle of 5xx and resets (with or without a retry-after), any refused key (401 or 403,
/// either dialect, any concurrency), and any budget, on the fake clock.
/// </summary>
[Collection(nameof(ClockTimed))]
public sealed class ProviderTroubleProperties : DispatchTestBase
{
    private static readonly TimeSpan Step = TimeSpan.FromMilliseconds(10);
    private int _batches;

    /// <summary>Runs the dispatcher over <paramref name="batchId"/> alone until it ends, or until the dispatcher gives up; returns why it gave up.</summary>
    private async Task<LaneState?> RunAsync(Dispatcher dispatcher, string batchId, SimulatedProvider simulator)
    {
        using var stop = new CancellationTokenSource();
        var running = dispatcher.RunAsync(batchId, stop.Token);
        await Time.RunUntilAsync(Task.WhenAny(dispatcher.WaitForBatchAsync(batchId, Ct), running), Step, () => dispatcher.IsQuiet(simulator.WaitingOnTheClock));
        await stop.CancelAsync();
        return await running;
    }

    private string Prefix() => $"p{Interlocked.Increment(ref _batches)}-";

    [Fact]
    public async Task AnySprinkleOfTransientFaults_IsRetriedSoon_AndNeverSlowsTheLane()
    {
        // Latency, the share of 500, 502, 503, 529 and resets (each at most 0.5%), a retry-after on 5xx (0: none), the seed.
        var providers = Gen.Select(Gen.Int[20, 300], Gen.Double[0, 0.005].Array[5], Gen.Int[0, 30], Gen.Int[1, 1_000_000]);
        await providers.SampleAsync(async (latency, rates, retryAfter, seed) =>
        {
            var (batchId, requests) = await ImportAsync(150, prefix: Prefix());
            var simulator = Simulators.Create(new SimulatorOptions
            {
                Latency = TimeSpan.FromMilliseconds(latency),
                Error500Rate = rates[0],
                Error502Rate = rates[1],
                Error503Rate = rates[2],
                Error529Rate = rates[3],
                ResetRate = rates[4],
                ErrorRetryAfter = retryAfter == 0 ? null : TimeSpan.FromSeconds(retryAfter),
            }, Time, seed);
            var dispatcher = CreateDispatcher(new SimulatorHandler(simulator), new DispatchOptions { Concurrency = 16, InitialConcurrency = 16, MaxAttempts = 10 });
            var started = Time.GetUtcNow();

            await RunAsync(dispatcher, batchId, simulator);

            Assert.Equal(150, (await Store.GetBatchAsync(batchId, Ct))!.Succeeded);
            var executed = simulator.ExecutedCounts();
            Assert.All(requests, r => Assert.Equal(1, executed[r.Key]));
            Assert.Equal(16, Assert.Single(dispatcher.Lanes).ConcurrencyLimit);
            // 150 requests, 16 at a time, are 10 rounds of the latency; retries of a sprinkle add a few
            // rounds and a backoff of milliseconds, never a retry-after of seconds.
            var elapsed = await TookAsync(batchId, started);
            Assert.True(elapsed < TimeSpan.FromMilliseconds(16 * (latency + Step.TotalMilliseconds)) + TimeSpan.FromSeconds(1), $"the batch took {elapsed}");
        }, iter: 40, threads: 1, print: t => $"latency {t.Item1} ms, faults {string.Join("/", t.Item2.Select(r => r.ToString("0.####", System.Globalization.CultureInfo.InvariantCulture)))}, retry-after {t.Item3} s, seed {t.Item4}");
    }

    [Fact]
    public async Task AnyRefusedKey_StopsTheRun_WithinItsConcurrency_AndSpendsNoAttempt()
    {
        // The most in flight, the lane's start, 401 or 403, the Anthropic dialect or OpenAI's, the batch's size.
        var cases = Gen.Select(Gen.Int[1, 64], Gen.Int[1, 16], Gen.Bool.Select(unknown => unknown ? 401 : 403), Gen.Bool, Gen.Int[5, 60]);
        await cases.SampleAsync(async (concurrency, initial, status, anthropic, count) =>
        {
            var requests = anthropic ? BatchFiles.Anthropic(count) : BatchFiles.OpenAIChat(count);
            var (batchId, _) = await ImportAsync(count, prefix: Prefix(), requests: requests);
            var simulator = Simulators.Create(new SimulatorOptions { ApiKey = "sk-right", RefusedKeyStatus = status, Latency = TimeSpan.FromMilliseconds(30) }, Time);
            var upstream = new UpstreamOptions
            {
                BaseUrl = new Uri(anthropic ? "http://upstream.test" : "http://upstream.test/v1"),
                Kind = anthropic ? UpstreamKind.Anthropic : UpstreamKind.OpenAI,
                ApiKey = new Secret("sk-wrong"),
            };
            var options = new DispatchOptions { Concurrency = concurrency, InitialConcurrency = initial, StopWhenKeyRefused = true };

            var stoppedBy = await RunAsync(CreateDispatcher(new SimulatorHandler(simulator), options, upstream), batchId, simulator);

            Assert.Equal(LaneCondition.KeyRefused, stoppedBy?.Condition);
            Assert.StartsWith($"HTTP {status}: ", stoppedBy!.Halt!.Reason, StringComparison.Ordinal);
            var sent = simulator.Stats().Requests;
            Assert.InRange(sent, 1, Math.Max(Math.Min(initial, concurrency), Math.Min(options.RefusalsToStop, concurrency)));
            Assert.Equal(sent, simulator.Stats().ByStatus[status]);
            var queued = await Store.ClaimAsync(anthropic ? "claude-haiku-4.5" : "gpt-4.1-mini", batchId, 1000, Time.GetUtcNow(), Time.GetUtcNow().AddMinutes(1), Ct);
            Assert.Equal(count, queued.Count);
            Assert.All(queued, item => Assert.Equal(1, item.Attempt));
            await Store.CancelBatchAsync(batchId, Time.GetUtcNow(), Ct);
        }, iter: 30, threads: 1, print: t => $"concurrency {t.Item1}, initial {t.Item2}, status {t.Item3}, anthropic {t.Item4}, {t.Item5} requests");
    }

    [Fact]
    public async Task AnyBudget_IsNeverOverspent_RefusesOnlyWhatItCanNoLongerPay_AndCompletesABatchItCovers()
    {
        // The batch's size, max_tokens, the budget as a share of the batch's real cost (in percent), the concurrency.
        var cases = Gen.Select(Gen.Int[10, 60], Gen.Int[20, 2000], Gen.Int[10, 300], Gen.Int[2, 50]);
        await cases.SampleAsync(async (count, maxTokens, percent, concurrency) =>
        {
            var requests = BatchFiles.OpenAIChat(count, model: "gpt-4o-mini", maxTokens: maxTokens);
            var simulator = Simulators.Create(new SimulatorOptions { Latency = TimeSpan.FromMilliseconds(100) }, Time);
            var options = new DispatchOptions { Concurrency = concurrency, InitialConcurrency = concurrency };
            var (free, _) = await ImportAsync(count, prefix: Prefix(), requests: requests);
            await RunAsync(CreateDispatcher(new SimulatorHandler(simulator), options), free, simulator);
            var realCost = (await Store.GetBatchAsync(free, Ct))!.CostNanos;
            var most = requests.ToDictionary(r => r.CustomId, r => MostOf(r, maxTokens));
            var budget = realCost * percent / 100;

            var (batchId, _) = await ImportAsync(count, prefix: Prefix(), requests: requests, budgetNanos: budget);
            await RunAsync(CreateDispatcher(new SimulatorHandler(simulator), options), batchId, simulator);

            var batch = await Store.GetBatchAsync(batchId, Ct);
            Assert.Equal(BatchStatus.Completed, batch!.Status);
            Assert.True(batch.CostNanos <= budget, $"spent {batch.CostNanos} of {budget}");
            Assert.Equal(count, batch.Succeeded + batch.BudgetExceeded);
            if (budget >= realCost + most.Values.Max())
            {
                Assert.Equal(count, batch.Succeeded);
            }

            // Spending only grows: a request refused for the budget could not have been paid at the end either.
            var results = await ResultsAsync(batchId);
            Assert.All(results.Where(r => r.State == ItemState.Failed), r =>
            {
                Assert.Equal(FailureCodes.BudgetExceeded, r.Result!.ErrorCode);
                Assert.True(batch.CostNanos + most[r.CustomId] > budget, $"{r.CustomId} (at most {most[r.CustomId]}) was refused though {budget - batch.CostNanos} was left");
            });
        }, iter: 25, threads: 1, print: t => $"{t.Item1} requests, max_tokens {t.Item2}, budget {t.Item3}% of the real cost, concurrency {t.Item4}");
    }

    /// <summary>The most a request may cost at gpt-4o-mini's prices ($0.15 and $0.60 per million tokens), as the dispatcher holds it.</summary>
    private static long MostOf(TestRequest request, int maxTokens)
    {
        var body = Encoding.UTF8.GetBytes(JsonDocument.Parse(request.Line).RootElement.GetProperty("body").GetRawText());
        return (new TokenEstimator().Estimate("gpt-4o-mini", body).PromptTokens * 150L) + (maxTokens * 600L);
    }
}
