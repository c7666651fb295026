using Microsoft.Extensions.Time.Testing;
using Shepherd.Engine.Storage;
using Shepherd.Testing;

namespace Shepherd.Engine.Tests;

/// <summary>Tests that run against a fresh SQLite store on a fake clock.</summary>
public abstract class StoreTestBase : IAsyncLifetime
{
    private TempStore _temp = null!;

    protected SqliteBatchStore Store => _temp.Store;

    protected FakeTimeProvider Time => _temp.Time;

    protected static CancellationToken Ct => TestContext.Current.CancellationToken;

    public async ValueTask InitializeAsync() => _temp = await TempStore.CreateAsync();

    public async ValueTask DisposeAsync()
    {
        await _temp.DisposeAsync();
        GC.SuppressFinalize(this);
    }
}
