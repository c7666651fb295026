using CsCheck;
using Microsoft.Extensions.Time.Testing;
using Shepherd.Testing;
using static Shepherd.Simulator.Tests.SimulatedBatchCalls;

namespace Shepherd.Simulator.Tests;

/// <summary>The batch shares and the turnaround hold for any seed, share and latency, not for one chosen case.</summary>
public sealed class BatchProperties
{
    private const int Lines = 200;

    private static readonly string[] Requests = [.. Enumerable.Range(0, Lines).Select(i => ChatLine($"r{i}", $"Rate review {i}"))];

    [Fact]
    public async Task TheExpireShare_IsMet_AndABatchWithExpiredLinesEndsExpired()
    {
        await Gen.Select(Gen.Int[1, 1_000_000], Gen.Double[0, 1]).SampleAsync(async (seed, share) =>
        {
            var time = new FakeTimeProvider();
            var simulator = Simulators.Create(new SimulatorOptions { BatchLatency = TimeSpan.FromMinutes(5), BatchExpireShare = share }, time, seed);
            var calls = new SimulatedBatchCalls(simulator);
            var id = (await calls.CreateAsync(Requests)).GetProperty("id").GetString()!;
            time.Advance(TimeSpan.FromMinutes(5));

            var ended = await calls.GetAsync($"/v1/batches/{id}");

            var expired = ended.GetProperty("request_counts").GetProperty("failed").GetInt32();
            Shares.AssertNear(expired, Lines, share, "lines expired");
            Assert.Equal(expired > 0 ? "expired" : "completed", ended.GetProperty("status").GetString());
            Assert.Equal(expired, simulator.Stats().Batch.LinesExpired);
            Assert.Equal(Lines - expired, simulator.Stats().Batch.LinesSucceeded);
        }, iter: 40, threads: 1, print: t => $"seed {t.Item1}, share {t.Item2}");
    }

    [Fact]
    public async Task TheTurnaround_IsTheLatency_AndCountsOnlyRise()
    {
        await Gen.Select(Gen.Int[1, 1_000_000], Gen.Int[1, 86_400], Gen.Int[2, 12]).SampleAsync(async (seed, seconds, looks) =>
        {
            var time = new FakeTimeProvider();
            var latency = TimeSpan.FromSeconds(seconds);
            var calls = new SimulatedBatchCalls(Simulators.Create(new SimulatorOptions { BatchLatency = latency }, time, seed));
            var start = time.GetUtcNow();
            var id = (await calls.CreateAsync(Requests[..20])).GetProperty("id").GetString()!;
            var completed = 0;

            // The last look is a tick before the latency is up.
            for (var look = 1; look <= looks; look++)
            {
                time.SetUtcNow(look == looks ? start + latency - TimeSpan.FromTicks(1) : start + (latency * look / looks));
                var batch = await calls.GetAsync($"/v1/batches/{id}");
                Assert.Equal("in_progress", batch.GetProperty("status").GetString());
                var now = batch.GetProperty("request_counts").GetProperty("completed").GetInt32();
                Assert.True(now >= completed, $"completed went from {completed} to {now}");
                completed = now;
            }

            time.SetUtcNow(start + latency);
            var ended = await calls.GetAsync($"/v1/batches/{id}");
            Assert.Equal("completed", ended.GetProperty("status").GetString());
            Assert.Equal(20, ended.GetProperty("request_counts").GetProperty("completed").GetInt32());
        }, iter: 40, threads: 1, print: t => $"seed {t.Item1}, latency {t.Item2} s, {t.Item3} looks");
    }

    [Fact]
    public async Task TheLineErrorShare_IsMet_InTheErrorFile()
    {
        await Gen.Select(Gen.Int[1, 1_000_000], Gen.Double[0, 1]).SampleAsync(async (seed, share) =>
        {
            var time = new FakeTimeProvider();
            var calls = new SimulatedBatchCalls(Simulators.Create(new SimulatorOptions { BatchLatency = TimeSpan.Zero, Error500Rate = share }, time, seed));

            var ended = await calls.CreateAsync(Requests);

            var failed = ended.GetProperty("request_counts").GetProperty("failed").GetInt32();
            Shares.AssertNear(failed, Lines, share, "lines failed");
            var errors = failed == 0 ? [] : await calls.FileLinesAsync(ended.GetProperty("error_file_id"));
            Assert.Equal(failed, errors.Count);
            Assert.All(errors, line => Assert.Equal(500, line.GetProperty("response").GetProperty("status_code").GetInt32()));
        }, iter: 40, threads: 1, print: t => $"seed {t.Item1}, share {t.Item2}");
    }
}
