namespace Shepherd.Engine.Storage;

/// <summary>Options of the embedded SQLite store.</summary>
public sealed class SqliteStoreOptions
{
    /// <summary>The database file. Created when missing.</summary>
    public required string Path { get; set; }

    /// <summary>
    /// How many results one export page reads.
    /// <value>The default is 1,000.</value>
    /// </summary>
    public int ResultPageSize { get; set; } = 1000;

    /// <summary>
    /// How long a writer waits for a lock another process holds before failing.
    /// <value>The default is 30 seconds.</value>
    /// </summary>
    public TimeSpan BusyTimeout { get; set; } = TimeSpan.FromSeconds(30);

    internal SqliteStoreOptions Validated()
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(Path);
        ArgumentOutOfRangeException.ThrowIfLessThan(ResultPageSize, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(BusyTimeout, TimeSpan.Zero);
        return new SqliteStoreOptions { Path = Path, ResultPageSize = ResultPageSize, BusyTimeout = BusyTimeout };
    }
}
