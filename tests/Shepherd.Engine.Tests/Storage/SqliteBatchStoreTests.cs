using Microsoft.Data.Sqlite;
using Shepherd.Engine.Storage;
using Shepherd.Testing;

namespace Shepherd.Engine.Tests.Storage;

public sealed class SqliteBatchStoreTests : BatchStoreContract
{
    private readonly TempDirectory _folder = new();

    private string DatabasePath => _folder.File("state.db");

    protected override Task<IBatchStore> CreateStoreAsync() =>
        Task.FromResult<IBatchStore>(new SqliteBatchStore(new SqliteStoreOptions { Path = DatabasePath, ResultPageSize = 1000 }, Time));

    public override async ValueTask DisposeAsync()
    {
        await base.DisposeAsync();
        _folder.Dispose();
    }

    [Fact]
    public async Task Everything_SurvivesClosingAndReopening()
    {
        var id = await CreateAcceptedBatchAsync(10);
        await Store.ClaimAsync("gpt-4.1-mini", id, 4, Time.GetUtcNow(), Time.GetUtcNow().AddMinutes(1), TestContext.Current.CancellationToken);
        await Store.DisposeAsync();

        await using var reopened = new SqliteBatchStore(new SqliteStoreOptions { Path = DatabasePath }, Time);
        await reopened.InitializeAsync(TestContext.Current.CancellationToken);

        Assert.Equal(10, (await reopened.GetBatchAsync(id, TestContext.Current.CancellationToken))?.Total);
        Assert.Equal(4, await reopened.ReleaseLeasesAsync(TestContext.Current.CancellationToken));
    }

    [Fact]
    public async Task ANewerSchema_IsRefusedWithAClearMessage()
    {
        await Store.DisposeAsync();
        await using (var connection = new SqliteConnection($"Data Source={DatabasePath};Pooling=False"))
        {
            await connection.OpenAsync(TestContext.Current.CancellationToken);
            await using var command = connection.CreateCommand();
            command.CommandText = "PRAGMA user_version = 99";
            await command.ExecuteNonQueryAsync(TestContext.Current.CancellationToken);
        }

        await using var newer = new SqliteBatchStore(new SqliteStoreOptions { Path = DatabasePath }, Time);
        var error = await Assert.ThrowsAsync<StoreException>(() => newer.InitializeAsync(TestContext.Current.CancellationToken));

        Assert.Contains("newer Shepherd (schema 99", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task TheDatabase_IsInWalMode()
    {
        await using var connection = new SqliteConnection($"Data Source={DatabasePath};Pooling=False");
        await connection.OpenAsync(TestContext.Current.CancellationToken);
        await using var command = connection.CreateCommand();
        command.CommandText = "PRAGMA journal_mode";

        Assert.Equal("wal", await command.ExecuteScalarAsync(TestContext.Current.CancellationToken));
    }
}
