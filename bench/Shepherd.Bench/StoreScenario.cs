using System.Diagnostics;
using System.Text;
using Shepherd.Engine.Batches;
using Shepherd.Engine.Model;
using Shepherd.Engine.Storage;

namespace Shepherd.Bench;

/// <summary>
/// The store's bookkeeping rate on its own: import a batch, then claim and commit every item
/// (with an answer body of realistic size) exactly as the dispatcher does, with no HTTP at all.
/// </summary>
internal static class StoreScenario
{
    public static async Task<object> RunAsync(BenchArgs args)
    {
        var count = args.Int("requests", 100_000);
        var claim = args.Int("claim", 128);
        var commit = args.Int("commit", 512);
        var promptBytes = args.Int("prompt-bytes", 0);
        using var workload = Workload.Create(count, promptBytes, keepBodies: false);
        var inputBytes = new FileInfo(workload.Path).Length;
        var memoryBefore = Process.GetCurrentProcess().PeakWorkingSet64;
        await using var store = new SqliteBatchStore(new SqliteStoreOptions { Path = Path.Combine(workload.Folder, "state.db") }, TimeProvider.System);
        await store.InitializeAsync(CancellationToken.None);

        var watch = Stopwatch.StartNew();
        ImportResult imported;
        await using (var input = File.OpenRead(workload.Path))
        {
            imported = await new BatchImporter(store, new ImportOptions()).ImportAsync(input, new NewBatch(BatchIds.NewBatchId(), workload.Path), CancellationToken.None);
        }

        var importSeconds = watch.Elapsed.TotalSeconds;
        var peakAfterImport = Process.GetCurrentProcess().PeakWorkingSet64;
        var answer = Encoding.UTF8.GetBytes("{\"id\":\"chatcmpl-0\",\"object\":\"chat.completion\",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":\""
            + new string('x', 200) + "\"},\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":20,\"completion_tokens\":12,\"total_tokens\":32}}");
        var pending = new List<ItemOutcome>(commit);
        var transactions = 0;
        watch.Restart();
        while (true)
        {
            var now = TimeProvider.System.GetUtcNow();
            var items = await store.ClaimAsync("gpt-4.1-mini", imported.BatchId, claim, now, now.AddMinutes(30), CancellationToken.None);
            transactions++;
            pending.AddRange(items.Select(item => new ItemOutcome(item, OutcomeKind.Succeeded, new AttemptResult { StatusCode = 200, Body = answer, RequestId = "req", InputTokens = 20, OutputTokens = 12 })));
            if (pending.Count >= commit || items.Count == 0)
            {
                await store.CommitAsync(pending, now, CancellationToken.None);
                transactions++;
                pending.Clear();
            }

            if (items.Count == 0)
            {
                break;
            }
        }

        var bookkeepingSeconds = watch.Elapsed.TotalSeconds;
        var batch = await store.GetBatchAsync(imported.BatchId, CancellationToken.None);
        return new
        {
            Scenario = "store",
            Machine = Machine.Describe(),
            Requests = count,
            InputMegabytes = Math.Round(inputBytes / 1048576.0, 1),
            PeakMemoryMbBeforeImport = memoryBefore / 1048576,
            PeakMemoryMbAfterImport = peakAfterImport / 1048576,
            ClaimChunk = claim,
            CommitBatch = commit,
            ImportSeconds = Math.Round(importSeconds, 3),
            ImportItemsPerSecond = Math.Round(count / importSeconds),
            BookkeepingSeconds = Math.Round(bookkeepingSeconds, 3),
            BookkeepingItemsPerSecond = Math.Round(count / bookkeepingSeconds),
            Transactions = transactions,
            Status = batch!.Status.ToString(),
            Succeeded = batch.Succeeded,
        };
    }
}
