using Npgsql;
using Shepherd.Engine.Configuration;
using Shepherd.Engine.Storage;
using Shepherd.Testing;

namespace Shepherd.Engine.Tests.Storage;

public sealed class PostgresStoreOptionsTests
{
    [Theory]
    [InlineData("postgres://db.internal:5432/shepherd", true)]
    [InlineData("postgresql://db.internal/shepherd", true)]
    [InlineData("Host=db.internal;Database=shepherd", true)]
    [InlineData("shepherd.db", false)]
    [InlineData("/var/lib/shepherd/state.db", false)]
    public void AStoreNamesPostgreSql_ByItsUrlOrItsHost(string store, bool postgres) =>
        Assert.Equal(postgres, PostgresStoreOptions.Names(store));

    [Fact]
    public void AUrl_BecomesNpgsqlSettings_WithItsUserPasswordAndQuery()
    {
        var options = new PostgresStoreOptions { ConnectionString = "postgres://shep%40rd:p%3Ass@db.internal:6543/batches?ssl_mode=Require&timeout=7" };

        var settings = new NpgsqlConnectionStringBuilder(options.NpgsqlConnectionString());

        Assert.Equal(("db.internal", 6543, "batches", "shep@rd", "p:ss"), (settings.Host, settings.Port, settings.Database, settings.Username, settings.Password));
        Assert.Equal(SslMode.Require, settings.SslMode);
        Assert.Equal(7, settings.Timeout);
        Assert.Equal(5432, new NpgsqlConnectionStringBuilder(new PostgresStoreOptions { ConnectionString = "postgres://db/x" }.NpgsqlConnectionString()).Port);
    }

    [Theory]
    [InlineData("postgres://user:secret@db/x", "postgres://user:***@db/x")]
    [InlineData("Host=db;Password=secret;Database=x", "Host=db;Password=***;Database=x")]
    [InlineData("postgres://db/x", "postgres://db/x")]
    public void Passwords_AreLeftOutOfMessages(string store, string shown) =>
        Assert.Equal(shown, PostgresStoreOptions.Redacted(store));

    [Theory]
    [InlineData("postgres://db:port/x", "is not a valid postgres://user:password@host:port/database url")]
    [InlineData("Host=db;Colour=blue", "olour")]
    public void ABadConnectionString_IsRefusedSayingWhy(string store, string message)
    {
        var error = Assert.ThrowsAny<ArgumentException>(() => new PostgresStoreOptions { ConnectionString = store }.Validated());
        Assert.Contains(message, error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void ANodeTimeoutOfZero_IsRefused() =>
        Assert.Throws<ArgumentOutOfRangeException>(() => new PostgresStoreOptions { ConnectionString = "Host=db", NodeTimeout = TimeSpan.Zero }.Validated());

    [Theory]
    [InlineData("""{"store":"postgres://db:port/x"}""", "shepherd.json: store: The store 'postgres://db:port/x' is not a valid")]
    [InlineData("""{"cluster":{"nodeTimeoutSeconds":0}}""", "shepherd.json: cluster.nodeTimeoutSeconds: must be at least 1.")]
    [InlineData("""{"cluster":{"node":" "}}""", "shepherd.json: cluster.node: must not be empty.")]
    [InlineData("""{"cluster":{"nodes":2}}""", "nodes")]
    public void ABadStoreOrClusterSection_IsAnErrorNamingIt(string json, string named)
    {
        var error = Assert.Throws<ConfigException>(() => ConfigFiles.Load(json));

        Assert.Contains(named, error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void TheStoreAndTheClusterSection_AreRead()
    {
        var config = ConfigFiles.Load("""{"store":"postgres://db/shepherd","cluster":{"node":"api-1","nodeTimeoutSeconds":30}}""");

        Assert.Equal(("postgres://db/shepherd", "api-1", 30.0), (config.Store, config.Cluster!.Node, config.Cluster.NodeTimeoutSeconds));
    }
}
