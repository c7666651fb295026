using BenchmarkDotNet.Attributes;
using Shepherd.Engine.Batches;
using Shepherd.Engine.Model;
using Shepherd.Engine.Storage;

namespace Shepherd.Micro;

/// <summary>
/// The SQLite store's two steps per request, as the dispatcher takes them: claiming queued items
/// (one transaction per chunk) and the group commit of their outcomes (one transaction per
/// group). Before every invocation a fresh batch is imported, and for the commit claimed, so each
/// invocation works on items in the state production hands it; the figures are per item.
/// </summary>
[MemoryDiagnoser]
public class StoreBenchmarks : IAsyncDisposable
{
    private const int CommitSize = 512;
    private const int ClaimSize = 128;

    private readonly byte[] _commitInput = Samples.OpenAIInput(CommitSize);
    private readonly byte[] _claimInput = Samples.OpenAIInput(ClaimSize);
    private readonly List<ItemOutcome> _outcomes = new(CommitSize);
    private readonly AttemptResult _answer = new()
    {
        StatusCode = 200,
        Body = Samples.OpenAIAnswer,
        RequestId = "req",
        InputTokens = 20,
        OutputTokens = 12,
    };

    private string? _folder;
    private SqliteBatchStore? _store;
    private string? _batchId;

    /// <summary>A new store in its own temp folder.</summary>
    [GlobalSetup]
    public async Task SetupAsync()
    {
        _folder = Path.Combine(Path.GetTempPath(), "shepherd-micro", Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(_folder);
        _store = new SqliteBatchStore(new SqliteStoreOptions { Path = Path.Combine(_folder, "state.db") }, TimeProvider.System);
        await _store.InitializeAsync(CancellationToken.None);
    }

    /// <summary>Closes the store and removes its folder.</summary>
    [GlobalCleanup]
    public async ValueTask DisposeAsync()
    {
        if (_store is not null)
        {
            await _store.DisposeAsync();
        }

        if (_folder is not null)
        {
            Directory.Delete(_folder, recursive: true);
        }

        GC.SuppressFinalize(this);
    }

    /// <summary>Imports a batch of 512 requests and claims them all, each with its answer waiting to be recorded.</summary>
    [IterationSetup(Target = nameof(Commit))]
    public void ClaimForCommit() => ClaimForCommitAsync().GetAwaiter().GetResult();

    /// <summary>Imports a batch of 128 requests, all queued.</summary>
    [IterationSetup(Target = nameof(Claim))]
    public void ImportForClaim() => _batchId = ImportAsync(_claimInput).GetAwaiter().GetResult();

    /// <summary>Records 512 answers in one transaction; the figure is per answer.</summary>
    [Benchmark(OperationsPerInvoke = CommitSize)]
    public Task<CommitSummary> Commit() => _store!.CommitAsync(_outcomes, TimeProvider.System.GetUtcNow(), CancellationToken.None);

    /// <summary>Leases 128 queued items in one transaction; the figure is per item.</summary>
    [Benchmark(OperationsPerInvoke = ClaimSize)]
    public Task<IReadOnlyList<ClaimedItem>> Claim() => ClaimAsync(ClaimSize);

    private async Task ClaimForCommitAsync()
    {
        if (_batchId is not null && await _store!.GetBatchAsync(_batchId, CancellationToken.None) is { Succeeded: not CommitSize } previous)
        {
            throw new InvalidOperationException($"The last commit recorded {previous.Succeeded} answers where {CommitSize} were claimed.");
        }

        _batchId = await ImportAsync(_commitInput);
        var items = await ClaimAsync(CommitSize);
        if (items.Count != CommitSize)
        {
            throw new InvalidOperationException($"Claimed {items.Count} items where {CommitSize} were queued.");
        }

        _outcomes.Clear();
        _outcomes.AddRange(items.Select(item => new ItemOutcome(item, OutcomeKind.Succeeded, _answer)));
    }

    private Task<IReadOnlyList<ClaimedItem>> ClaimAsync(int max)
    {
        var now = TimeProvider.System.GetUtcNow();
        return _store!.ClaimAsync(Samples.OpenAIModel, _batchId, max, now, now.AddMinutes(30), CancellationToken.None);
    }

    private async Task<string> ImportAsync(byte[] input)
    {
        using var stream = new MemoryStream(input, writable: false);
        var imported = await new BatchImporter(_store!, new ImportOptions()).ImportAsync(stream, new NewBatch(BatchIds.NewBatchId(), null), CancellationToken.None);
        return imported.Accepted ? imported.BatchId : throw new InvalidOperationException($"The sample batch was rejected: {imported.Errors[0].Message}");
    }
}
