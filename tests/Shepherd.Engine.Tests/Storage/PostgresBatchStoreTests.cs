using Shepherd.Engine.Storage;
using Shepherd.Testing;

namespace Shepherd.Engine.Tests.Storage;

/// <summary>The store contract on PostgreSQL: a fresh database on the test cluster per test.</summary>
public sealed class PostgresBatchStoreTests : BatchStoreContract
{
    protected override async Task<IBatchStore> CreateStoreAsync()
    {
        if (PostgresCluster.SkipReason is { } reason)
        {
            Assert.Skip(reason);
        }

        var database = await PostgresCluster.CreateDatabaseAsync(TestContext.Current.CancellationToken);
        return new PostgresBatchStore(new PostgresStoreOptions { ConnectionString = database, NodeName = "node-a", ResultPageSize = 1000 }, Time);
    }
}
