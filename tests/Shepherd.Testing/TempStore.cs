using Microsoft.Extensions.Time.Testing;
using Shepherd.Engine.Storage;

namespace Shepherd.Testing;

/// <summary>An initialised SQLite store in a fresh folder, on a fake clock; both go on dispose.</summary>
public sealed class TempStore : IAsyncDisposable
{
    private TempStore(TempDirectory folder, FakeTimeProvider time, SqliteBatchStore store)
    {
        Folder = folder;
        Time = time;
        Store = store;
    }

    public TempDirectory Folder { get; }

    public FakeTimeProvider Time { get; }

    public SqliteBatchStore Store { get; }

    public static async Task<TempStore> CreateAsync()
    {
        var folder = new TempDirectory();
        var time = new FakeTimeProvider(new DateTimeOffset(2026, 11, 28, 12, 0, 0, TimeSpan.Zero));
        var store = new SqliteBatchStore(new SqliteStoreOptions { Path = folder.File("state.db") }, time);
        await store.InitializeAsync(CancellationToken.None);
        return new TempStore(folder, time, store);
    }

    public async ValueTask DisposeAsync()
    {
        await Store.DisposeAsync();
        Folder.Dispose();
    }
}
