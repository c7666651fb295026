using Microsoft.Data.Sqlite;
using Shepherd.Engine.Model;

namespace Shepherd.Engine.Storage;

public sealed partial class SqliteBatchStore
{
    /// <inheritdoc />
    public async Task<FileRecord> AddFileAsync(NewFile file, Stream content, long maxBytes, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(file);
        ArgumentNullException.ThrowIfNull(content);
        Directory.CreateDirectory(FilesFolder);
        var path = FilePath(file.Id);
        var partial = path + ".partial";
        long bytes = 0;
        try
        {
            await using (var target = new FileStream(partial, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 16, useAsync: true))
            {
                var buffer = new byte[1 << 16];
                int read;
                while ((read = await content.ReadAsync(buffer, cancellationToken)) > 0)
                {
                    bytes += read;
                    if (bytes > maxBytes)
                    {
                        throw new FileTooLargeException($"The file is larger than {maxBytes} bytes.");
                    }

                    await target.WriteAsync(buffer.AsMemory(0, read), cancellationToken);
                }
            }

            File.Move(partial, path, overwrite: true);
        }
        catch
        {
            File.Delete(partial);
            throw;
        }

        var record = StoreRows.NewFileRecord(file, bytes, _time.GetUtcNow());
        await WriteAsync(writer => Execute(writer, StoreSql.InsertFile, null,
            ("@id", record.Id), ("@owner", record.Owner), ("@filename", record.Filename), ("@purpose", record.Purpose), ("@bytes", record.Bytes),
            ("@created", record.CreatedAt.ToUnixTimeMilliseconds()), ("@batch", record.BatchId)), cancellationToken);
        return record;
    }

    /// <inheritdoc />
    public async Task<FileRecord?> GetFileAsync(string fileId, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(fileId);
        await using var connection = Open();
        return ReadFiles(connection, StoreSql.FileById, ("@id", fileId)).SingleOrDefault();
    }

    /// <inheritdoc />
    public async Task<Page<FileRecord>> ListFilesAsync(OwnerScope owner, string? purpose, PageRequest page, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(page);
        await using var connection = Open();
        var files = ReadFiles(connection, PageQuery(StoreRows.FileColumns, "files", "($everyone = 1 OR owner IS $owner) AND ($purpose IS NULL OR purpose = $purpose)", page),
            ("$owner", owner.Owner), ("$everyone", owner.Everyone ? 1 : 0), ("$purpose", purpose), ("$after", page.After), ("$before", page.Before), ("$limit", page.Limit + 1));
        return StoreRows.ToPage(files, page);
    }

    /// <inheritdoc />
    public Task<Stream> OpenFileAsync(string fileId, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(fileId);
        return Task.FromResult<Stream>(new FileStream(FilePath(fileId), FileMode.Open, FileAccess.Read, FileShare.Read | FileShare.Delete, 1 << 16, useAsync: true));
    }

    /// <inheritdoc />
    public async Task<bool> DeleteFileAsync(string fileId, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(fileId);
        var deleted = await WriteAsync(writer => Execute(writer, StoreSql.DeleteFile, null, ("@id", fileId)), cancellationToken);
        var path = FilePath(fileId);
        if (File.Exists(path))
        {
            File.Delete(path);
        }

        return deleted == 1;
    }

    private string FilesFolder => _options.Path + ".files";

    private string FilePath(string fileId) =>
        Path.Combine(FilesFolder, fileId.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_') ? fileId : throw new ArgumentException($"'{fileId}' is not a file id.", nameof(fileId)));

    private static List<FileRecord> ReadFiles(SqliteConnection connection, string sql, params (string Name, object? Value)[] parameters) =>
        Query(connection, StoreRows.ReadFile, sql, parameters);
}
