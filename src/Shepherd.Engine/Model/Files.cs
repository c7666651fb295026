namespace Shepherd.Engine.Model;

/// <summary>A stored file: an upload, or results a batch produced.</summary>
public sealed record FileRecord
{
    /// <summary>The file id, such as <c>file-5f3c…</c>.</summary>
    public required string Id { get; init; }

    /// <summary>The tenant that owns the file.</summary>
    public string? Owner { get; init; }

    /// <summary>The name it was uploaded with, or given.</summary>
    public required string Filename { get; init; }

    /// <summary><c>batch</c> for inputs, <c>batch_output</c> for results.</summary>
    public required string Purpose { get; init; }

    /// <summary>Its length in bytes.</summary>
    public long Bytes { get; init; }

    /// <summary>When it was stored.</summary>
    public required DateTimeOffset CreatedAt { get; init; }

    /// <summary>The batch that produced it, for result files.</summary>
    public string? BatchId { get; init; }
}

/// <summary>A file to store.</summary>
/// <param name="Id">The new file's id.</param>
/// <param name="Owner">The tenant that owns it.</param>
/// <param name="Filename">Its name.</param>
/// <param name="Purpose">Its purpose.</param>
/// <param name="BatchId">The batch that produced it, for result files.</param>
public sealed record NewFile(string Id, string? Owner, string Filename, string Purpose, string? BatchId = null);

/// <summary>The file is larger than allowed; nothing of it was kept.</summary>
public sealed class FileTooLargeException : Exception
{
    /// <summary>Creates an exception with no message.</summary>
    public FileTooLargeException()
    {
    }

    /// <summary>Creates an exception with a message.</summary>
    public FileTooLargeException(string message)
        : base(message)
    {
    }

    /// <summary>Creates an exception with a message and its cause.</summary>
    public FileTooLargeException(string message, Exception innerException)
        : base(message, innerException)
    {
    }
}
