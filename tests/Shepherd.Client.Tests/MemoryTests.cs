using Shepherd.Server.Tests;
using Shepherd.Simulator;
using Shepherd.Testing;

namespace Shepherd.Client.Tests;

/// <summary>
/// How much memory the client holds while it streams results. The heap is the whole process's,
/// so nothing else of this assembly runs meanwhile.
/// </summary>
[Collection(MemoryTests.Alone)]
public sealed class MemoryTests
{
    public const string Alone = "memory, alone";

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task Exporting20000Results_KeepsMemoryFlat()
    {
        await using var server = await RunningServer.StartAsync(new SimulatorOptions());
        using var folder = new TempDirectory();
        using var client = ClientTests.ClientOf(server);
        var batch = await client.CreateBatchAsync(new NewBatch
        {
            Model = "m",
            Requests = [.. Enumerable.Range(0, 20_000).Select(i => BatchItem.FromPrompt($"r{i}", $"question {i} about a product review"))],
        }, Ct);
        var done = await client.WaitForCompletionAsync(batch.Id, timeout: TimeSpan.FromMinutes(3), cancellationToken: Ct);
        Assert.Equal(20_000, done.Batch.Succeeded);

        // The server runs in this process too, so the heap is sampled as the stream goes on: what
        // matters is that it stops growing once the buffer pools are warm, not its absolute size.
        var samples = new List<long>();
        var count = 0;
        WeakReference<BatchResult>? first = null;
        var firstReleased = false;
        await foreach (var result in client.GetResultsAsync(batch.Id, Ct))
        {
            Assert.Equal($"r{count}", result.CustomId);
            first ??= new WeakReference<BatchResult>(result);
            if (++count % 2000 == 0)
            {
                samples.Add(GC.GetTotalMemory(forceFullCollection: true));
                firstReleased |= !first.TryGetTarget(out _);
            }
        }

        var exported = await client.ExportResultsAsync(batch.Id, folder.File("all.jsonl"), Ct);

        Assert.Equal(20_000, count);
        Assert.Equal(20_000, exported);
        // The stream lets go of what it has handed out: the first result is collected long before the last arrives...
        Assert.True(firstReleased, "the first result was still held while the stream went on");
        // ...and from the second sample on (4,000 results in), the heap grows by far less than the
        // 16,000 results still to come would take if they were held (their bytes alone are 80% of
        // the file, more as objects); pools warming up add a few MB in steps.
        var fileBytes = new FileInfo(folder.File("all.jsonl")).Length;
        var growth = samples[^1] - samples[1];
        Assert.True(growth < fileBytes / 2, $"heap grew by {growth} bytes over the last 16,000 of 20,000 results ({fileBytes} bytes in all); samples {string.Join(", ", samples)}");
    }
}

/// <summary>Tests that measure the process's heap: they run with no other test of the assembly.</summary>
[CollectionDefinition(MemoryTests.Alone, DisableParallelization = true)]
public sealed class HeapMeasuringTests;
