using System.Text;
using CsCheck;
using Shepherd.Engine.Dispatch;
using Shepherd.Engine.Formats;
using Shepherd.Engine.Model;
using Shepherd.Engine.Tests.Dispatch;
using Shepherd.Engine.Upstreams;
using Shepherd.Simulator;
using Shepherd.Testing;

namespace Shepherd.Engine.Tests.Properties;

/// <summary>
/// Answers checked against the structured output their requests ask for, drawn from a family of
/// providers that answer some with broken JSON or JSON that breaks the schema, in every way a
/// request asks (an OpenAI <c>json_schema</c> or <c>json_object</c>, an Anthropic forced tool): every
/// answer kept fits, every one that does not is asked again as often as the batch allows, and the
/// counts and costs add up.
/// </summary>
[Collection(nameof(ClockTimed))]
public sealed class StructuredOutputProperties : DispatchTestBase
{
    private const int Count = 40;
    private int _batches;

    private async Task RunAsync(Dispatcher dispatcher, string batchId, SimulatedProvider simulator)
    {
        using var stop = new CancellationTokenSource();
        var running = dispatcher.RunAsync(batchId, stop.Token);
        await Time.RunUntilAsync(Task.WhenAny(dispatcher.WaitForBatchAsync(batchId, Ct), running), TimeSpan.FromMilliseconds(10), () => dispatcher.IsQuiet(simulator.WaitingOnTheClock));
        await stop.CancelAsync();
        await running;
    }

    private static List<TestRequest> Requests(int ask, string prefix) => ask switch
    {
        0 => BatchFiles.OpenAIStructured(Count, idPrefix: prefix),
        1 => BatchFiles.OpenAIStructured(Count, schema: null, idPrefix: prefix),
        _ => BatchFiles.AnthropicTool(Count, idPrefix: prefix),
    };

    [Fact]
    public async Task EveryAnswerKeptFits_EveryBrokenOneIsAskedAgain_AndTheCountsAndCostsAddUp()
    {
        // Broken JSON and broken-schema shares, the re-asks a batch allows, how the requests ask (json_schema, json_object, a forced tool), the seed.
        var cases = Gen.Select(Gen.Double[0, 0.4], Gen.Double[0, 0.4], Gen.Int[0, 3], Gen.Int[0, 2], Gen.Int[1, 1_000_000]);
        var (reasked, invalid, checkedFirst) = (0L, 0L, 0L);
        await cases.SampleAsync(async (broken, breaks, maxReasks, ask, seed) =>
        {
            var prefix = $"s{Interlocked.Increment(ref _batches)}-";
            var requests = Requests(ask, prefix);
            var (batchId, _) = await ImportAsync(Count, prefix: prefix, requests: requests, shape: batch => batch with { MaxReasks = maxReasks });
            var simulator = Simulators.Create(new SimulatorOptions { BrokenJsonRate = broken, SchemaBreakRate = ask == 1 ? 0 : breaks, Latency = TimeSpan.FromMilliseconds(20) }, Time, seed);
            var upstream = new UpstreamOptions { BaseUrl = new Uri("http://upstream.test/v1"), Kind = ask == 2 ? UpstreamKind.Anthropic : UpstreamKind.OpenAI };
            await RunAsync(CreateDispatcher(new SimulatorHandler(simulator), new DispatchOptions { Concurrency = 8 }, upstream), batchId, simulator);

            var batch = (await Store.GetBatchAsync(batchId, Ct))!;
            var results = await ResultsAsync(batchId);
            var executed = simulator.ExecutedCounts();
            var sent = requests.ToDictionary(r => r.CustomId, r => executed.GetValueOrDefault(r.Key));
            var url = ask == 2 ? BatchEndpoints.Messages : BatchEndpoints.ChatCompletions;
            Assert.Equal(Count, batch.Succeeded + batch.Failed);
            foreach (var item in results)
            {
                var request = requests.Single(r => r.CustomId == item.CustomId);
                var contract = StructuredOutput.Of(url, Encoding.UTF8.GetBytes(request.Body))!;
                var check = StructuredOutput.Check(contract, url, item.Result!.Body);
                if (item.State == ItemState.Succeeded)
                {
                    // Kept only when it fits, after as many answers as it took.
                    Assert.Equal(OutputVerdict.Valid, check.Verdict);
                    Assert.InRange(sent[item.CustomId], 1, maxReasks + 1);
                }
                else
                {
                    // Failed only once every answer it was allowed did not fit; the last one is kept with why.
                    Assert.Equal((ItemState.Failed, FailureCodes.InvalidOutput, 200), (item.State, item.Result.ErrorCode, item.Result.StatusCode));
                    Assert.NotEqual(OutputVerdict.Valid, check.Verdict);
                    Assert.False(string.IsNullOrEmpty(item.Result.ErrorMessage));
                    Assert.Equal(maxReasks + 1, sent[item.CustomId]);
                }
            }

            var output = batch.Output;
            Assert.Equal(results.Count(r => r.State == ItemState.Succeeded && sent[r.CustomId] == 1), output.ValidFirst);
            Assert.Equal(batch.Succeeded - output.ValidFirst, output.ValidReasked);
            Assert.Equal(batch.Failed, output.Invalid);
            Assert.Equal(sent.Values.Sum() - Count, output.Reasked);
            // Every answer was paid: those kept, and apart, those asked again.
            Assert.Equal(results.Sum(r => r.Result!.CostNanos) + output.ReaskCostNanos, batch.CostNanos);
            Assert.Equal(output.Reasked > 0, output.ReaskCostNanos > 0);
            Interlocked.Add(ref reasked, output.Reasked);
            Interlocked.Add(ref invalid, output.Invalid);
            Interlocked.Add(ref checkedFirst, output.ValidFirst);
        }, iter: 30, threads: 1, print: t => $"broken {t.Item1:0.###}, schema breaks {t.Item2:0.###}, re-asks {t.Item3}, ask {t.Item4}, seed {t.Item5}");

        // The family showed every path: answers valid at once, asked again, and failed.
        Assert.True(reasked > 0 && invalid > 0 && checkedFirst > 0, $"asked again {reasked}, invalid {invalid}, valid at once {checkedFirst}");
    }

    [Fact]
    public async Task ABatchSchema_ChecksRequestsThatAskForNone_AndFailsFreeTextAfterItsReasks()
    {
        var requests = BatchFiles.OpenAIStructured(6, asked: false);
        var (batchId, _) = await ImportAsync(6, requests: requests, shape: batch => batch with { OutputSchema = BatchFiles.ReviewSchema, MaxReasks = 1 });
        var simulator = Simulators.Create(new SimulatorOptions(), Time);
        await RunAsync(CreateDispatcher(new SimulatorHandler(simulator)), batchId, simulator);

        // The simulator answers a request that asks for no JSON with prose: no answer fits, each is asked once more.
        var batch = (await Store.GetBatchAsync(batchId, Ct))!;
        Assert.Equal((0L, 6L, 6L, 6L), (batch.Succeeded, batch.Failed, batch.Output.Invalid, batch.Output.Reasked));
        Assert.All(requests, r => Assert.Equal(2, simulator.ExecutedCounts()[r.Key]));
        Assert.All(await ResultsAsync(batchId), r => Assert.StartsWith("the answer is not JSON: ", r.Result!.ErrorMessage, StringComparison.Ordinal));
    }

    [Fact]
    public async Task FreeText_IsNotChecked()
    {
        var requests = BatchFiles.OpenAIStructured(5, asked: false);
        var (batchId, _) = await ImportAsync(5, requests: requests);
        var simulator = Simulators.Create(new SimulatorOptions { BrokenJsonRate = 1 }, Time);
        await RunAsync(CreateDispatcher(new SimulatorHandler(simulator)), batchId, simulator);

        var batch = (await Store.GetBatchAsync(batchId, Ct))!;
        Assert.Equal((5L, OutputTally.None), (batch.Succeeded, batch.Output));
        Assert.All(requests, r => Assert.Equal(1, simulator.ExecutedCounts()[r.Key]));
    }

    [Fact]
    public async Task AStop_WithStructuredRequestsInFlight_EndsTheRun_AndLeavesThemToRunAgain()
    {
        var requests = BatchFiles.OpenAIStructured(20);
        var (batchId, _) = await ImportAsync(20, requests: requests);
        var simulator = Simulators.Create(new SimulatorOptions { Latency = TimeSpan.FromSeconds(2) }, Time);
        var dispatcher = CreateDispatcher(new SimulatorHandler(simulator), new DispatchOptions { Concurrency = 4, InitialConcurrency = 4 });
        using var stop = new CancellationTokenSource();
        var sent = new TaskCompletionSource();
        simulator.RequestReceived += total =>
        {
            if (total >= 4)
            {
                sent.TrySetResult();
            }
        };

        var running = dispatcher.RunAsync(null, stop.Token);
        await Time.RunUntilAsync(sent.Task, TimeSpan.FromMilliseconds(10));
        await stop.CancelAsync();

        // The requests cut short by the stop have no answer to check: the run ends, and they stay to be sent again.
        await running.WaitAsync(TimeSpan.FromSeconds(30), Ct);
        Assert.True((await Store.GetBatchAsync(batchId, Ct))!.Finished < 20);
    }
}

